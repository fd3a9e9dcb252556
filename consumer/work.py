"""Typed values that travel between the loop, the steps and the sink.

A `WorkItem` is one consumed message on its way through the chain. It carries the
assignment epoch it was consumed under, so work that finishes after its partition was
revoked (and perhaps re-assigned) can never be counted in the newer assignment
(the Confluent Parallel Consumer's `WorkContainer`). What depends only on the image
bytes is a `ContentResult`: the cache stores it by hash and every event re-judges it
under its own profile and role.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from consumer.events import ImageScored, ImageUploaded, ModelRef, ReasonCode, now_utc, scored_event_id
from consumer.policy import Verdict


@dataclass(frozen=True)
class Source:
    """Where a message came from, and under which assignment epoch it was consumed."""

    topic: str
    partition: int
    offset: int
    epoch: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class Rejection:
    """A seller-side, permanent problem: becomes a `reject` with this reason."""

    code: ReasonCode
    message: str


@dataclass(frozen=True)
class ContentResult:
    """Everything that depends only on the bytes: cached by content hash."""

    sha256: str
    signals: dict[str, float]
    model: ModelRef | None = None
    reject: Rejection | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"content_sha256": self.sha256, "signals": self.signals}
        if self.model is not None:
            body["model"] = self.model.model_dump()
        if self.reject is not None:
            body["reject"] = {"code": self.reject.code.value, "message": self.reject.message}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str | None, sha256: str) -> "ContentResult | None":
        """A cache entry we can trust, or None (a miss; it is overwritten after scoring)."""
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or body.get("content_sha256") != sha256:
                return None
            if body.get("reject") is not None:
                r = body["reject"]
                return cls(sha256, {}, None, Rejection(ReasonCode(r["code"]), str(r["message"])))
            signals = body.get("signals")
            if not isinstance(signals, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in signals.values()):
                return None
            model = ModelRef.model_validate(body["model"]) if body.get("model") else None
            return cls(sha256, {str(k): float(v) for k, v in signals.items()}, model)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(eq=False)
class ShadowInput:
    """What a shadow sample keeps for the candidate model (consumer/shadow.py) past the default's use of it.

    `data`: the fetched bytes, when the candidate's input differs from the default's (another size or
    views) and the shadow thread decodes for itself; else `pixels`: the default's own model input,
    handed over after the default's inference instead of being dropped."""

    own_decode: bool
    data: bytes | None = None
    pixels: Any = None


@dataclass(eq=False)
class WorkItem:
    source: Source
    consumed_at: float = field(default_factory=time.monotonic)
    event: ImageUploaded | None = None
    data: bytes | None = None  # fetched bytes, dropped after decode
    sha256: str | None = None
    verified: bool = True  # sha256 is the hash of bytes we fetched (not a claimed hint)
    pixels: Any = None  # model input from the predictor's preprocess, dropped after inference
    measured: dict[str, float] | None = None
    content: ContentResult | None = None
    rejection: Rejection | None = None  # fetch-time seller problem (no content to cache)
    cached: bool = False
    leader: bool = False  # single-flight leader: serves identical content to its followers
    store_content: bool = False  # content is new: write it to the cache
    verdict: Verdict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    failures: int = 0  # unexpected errors so far
    transient_failures: int = 0  # our own transient errors so far (DNS, 5xx, device ...)
    enqueued_at: float = 0.0
    shadow: ShadowInput | None = None  # kept for a shadow sample (set by steps.shadow.ShadowTap)

    @property
    def known(self) -> bool:
        """The outcome no longer needs fetch, decode or the model."""
        return self.content is not None or self.rejection is not None

    def reset_for_retry(self) -> None:
        self.data = self.pixels = self.measured = self.content = self.rejection = self.verdict = None
        self.sha256, self.verified, self.cached, self.leader, self.store_content = None, True, False, False, False
        self.shadow = None

    def release_pixels(self) -> None:
        """After the default model: drop the input, unless a shadow sample takes it over."""
        if self.shadow is not None and not self.shadow.own_decode:
            self.shadow.pixels = self.pixels
        self.pixels = None

    def log_ids(self) -> dict[str, Any]:
        ev = self.event
        return {"event_id": ev.event_id if ev else None, "image_id": ev.image_id if ev else None,
                "topic": self.source.topic, "partition": self.source.partition, "offset": self.source.offset}


def merge_signals(measured: dict[str, float] | None, outputs: dict[str, Any], i: int) -> dict[str, float]:
    """Measured signals + the model's outputs for row i: what the policy judges and the cache keeps."""
    signals = dict(measured or {})
    signals.update({k: float(v[i]) for k, v in outputs.items()})
    # Rounded once, here: the event, the cache and `imagegate score` then carry identical values.
    return {k: round(v, 6) for k, v in signals.items()}


def build_scored(item: WorkItem, verdict: Verdict, model: ModelRef, signals: dict[str, float]) -> ImageScored:
    """The image_scored event for one item (validated against the contract)."""
    ev = item.event
    assert ev is not None
    timings = dict(item.timings)
    timings["total_ms"] = round((time.monotonic() - item.consumed_at) * 1000.0, 3)
    return ImageScored(
        event_id=scored_event_id(ev.event_id, model.version, verdict.policy),
        source_event_id=ev.event_id,
        image_id=ev.image_id,
        listing_id=ev.listing_id,
        seller_id=ev.seller_id,
        role=ev.role,
        content_sha256=item.sha256,
        content_verified=item.verified,
        trigger=ev.trigger,
        score=verdict.score,
        decision=verdict.decision,
        reasons=verdict.reasons,
        signals=signals,
        model=model,
        policy=verdict.policy,
        cached=item.cached,
        scored_at=now_utc(),
        timings=timings,
    )
