"""The unit of work that flows through the pipeline, and how a result body is built."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from consumer.events import ImageScored, ImageUploaded, ModelRef, now_utc, scored_event_id
from consumer.policy import Verdict


@dataclass
class WorkItem:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]]
    msg_key: bytes | None = None
    consumed_at: float = field(default_factory=time.monotonic)
    event: ImageUploaded | None = None
    sha256: str | None = None
    signals: dict[str, float] | None = None
    tensor: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    enqueued_at: float = 0.0

    def traceparent(self) -> bytes | None:
        for k, v in self.headers:
            if k == "traceparent":
                return v
        return None


def merge_signals(measured: dict[str, float] | None, outputs: dict[str, Any], i: int) -> dict[str, float]:
    """Measured signals + the model's outputs for row i: what the policy judges and the cache keeps."""
    signals = dict(measured or {})
    signals.update({k: float(v[i]) for k, v in outputs.items()})
    # Rounded once, here: the event, the cache and `imagegate score` then carry identical values.
    return {k: round(v, 6) for k, v in signals.items()}


def build_scored(item: WorkItem, verdict: Verdict, model: ModelRef, signals: dict[str, float], sha256: str | None, cached: bool) -> dict[str, Any]:
    """The image_scored body for one event (validated against the contract)."""
    ev = item.event
    assert ev is not None
    timings = dict(item.timings)
    timings["total_ms"] = round((time.monotonic() - item.consumed_at) * 1000.0, 3)
    body = ImageScored(
        event_id=scored_event_id(ev.event_id, model.version),
        source_event_id=ev.event_id,
        image_id=ev.image_id,
        listing_id=ev.listing_id,
        seller_id=ev.seller_id,
        role=ev.role,
        content_sha256=sha256,
        score=verdict.score,
        decision=verdict.decision,
        reasons=verdict.reasons,
        signals=signals,
        model=model,
        policy=verdict.policy,
        cached=cached,
        scored_at=now_utc(),
        timings=timings,
    )
    return body.model_dump(mode="json")
