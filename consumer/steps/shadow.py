"""Hand a sampled share of the traffic to the shadow (consumer/shadow.py); both steps only when one is configured.

`ShadowTap` (before decode) keeps what the candidate model will need past the default's use
of it; `ShadowOffer` (after judge) offers the sample without waiting. Neither can fail or
delay the item: the default verdict goes on to emit exactly as without a shadow.

`shadow_steps` builds the shadow and both steps once, for the worker's chain (consumer/pipeline.py)
and the scoring API's (scoring_api/service.py), so the two cannot drift apart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from consumer.config import Settings
from consumer.health import Health
from consumer.shadow import Candidate, Shadow
from consumer.steps.base import NEXT, Flow
from consumer.work import ShadowInput, WorkItem


class ShadowTap:
    name = "shadow_tap"
    produces_content = True  # a cache hit has no bytes or pixels to keep

    def __init__(self, shadow: Shadow):
        self.shadow = shadow

    def __call__(self, item: WorkItem) -> Flow:
        if self.shadow.wants_input(item):
            own = self.shadow.own_decode
            item.shadow = ShadowInput(own_decode=own, data=item.data if own else None)
        return NEXT


class ShadowOffer:
    name = "shadow"
    produces_content = False

    def __init__(self, shadow: Shadow):
        self.shadow = shadow

    def __call__(self, item: WorkItem) -> Flow:
        self.shadow.offer(item)  # never raises, never waits
        return NEXT


@dataclass(frozen=True)
class ShadowSteps:
    """The shadow and the steps a chain splices in: `tap` before decode, `offer` after judge (empty without one)."""

    shadow: Shadow | None = None
    tap: tuple[ShadowTap, ...] = ()
    offer: tuple[ShadowOffer, ...] = ()


def shadow_steps(s: Settings, predictor: Any, candidate: Candidate | None, health: Health, halt: threading.Event,
                 via: str = "worker") -> ShadowSteps:
    """The shadow for `candidate` (None: no shadow, no steps), its thread registered with `health`.

    Registered here, not by the caller: a shadow that died or stalled must fail `/healthz` in every
    process that runs one (consumer/shadow.py says why). `via` marks its records (worker or api)."""
    if candidate is None:
        return ShadowSteps()
    shadow = Shadow(s, predictor, candidate, health, halt, via=via)
    health.register("shadow", shadow.thread)
    return ShadowSteps(shadow, (ShadowTap(shadow),), (ShadowOffer(shadow),))
