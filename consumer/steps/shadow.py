"""Hand a sampled share of the traffic to the shadow (consumer/shadow.py); both steps only when one is configured.

`ShadowTap` (before decode) keeps what the candidate model will need past the default's use
of it; `ShadowOffer` (after judge) offers the sample without waiting. Neither can fail or
delay the item: the default verdict goes on to emit exactly as without a shadow.
"""

from __future__ import annotations

from consumer.shadow import Shadow
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
