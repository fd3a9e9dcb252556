"""Where a shadow verdict goes: the agreement metrics always, and the shadow topic when one is set.

Kept apart from the shadow's scoring (consumer/shadow.py) because it is the only part that talks to
Kafka, and because its record format is what `imagegate shadow report` reads
(producer_tools/shadow_report.py): an image_scored-shaped body with a `shadow` field that carries
the default verdict, so the report needs nothing else. Producing is best effort: a shadow record
is never retried and never holds up the listing traffic; failures are counted
(`imagegate_shadow_publish_errors_total`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from consumer import metrics
from consumer.agreement import reason_outcomes
from consumer.config import Settings
from consumer.events import ImageScored, ImageUploaded, ModelRef, cloudevent_headers, now_utc, scored_event_id
from consumer.policy import Verdict
from consumer.work import Rejection, ShadowInput

log = logging.getLogger("imagegate.shadow")

SHADOW_HEADER = "imagegate_shadow"
SHADOW_EVENT_TYPE = "dev.imagegate.image_scored.shadow.v1"


@dataclass(frozen=True)
class ShadowSample:
    """One sampled event, handed from the chain to the shadow thread."""

    event: ImageUploaded
    sha256: str | None
    verified: bool
    cached: bool
    default: Verdict
    default_model: ModelRef
    signals: dict[str, float]  # the default's content signals ({} for a seller-side rejection)
    measured: dict[str, float] | None  # the default decode's measurements (None on a cache hit)
    rejection: Rejection | None  # found before any model: judged by the candidate policy alone
    input: ShadowInput | None


class ShadowOutput:
    """The candidate's verdicts out: metrics for every one, a record on the shadow topic when set."""

    def __init__(self, s: Settings, model_ref: ModelRef, via: str = "worker"):
        self.share = s.shadow_sample
        self.via = via
        self.model_ref = model_ref
        self.topic = s.shadow_topic
        self.source = s.source
        self.producer = None
        if self.topic:
            from confluent_kafka import Producer

            self.producer = Producer({"linger.ms": 50, "compression.type": "lz4", "acks": "all",
                                      "logger": logging.getLogger("imagegate.kafka"), **s.kafka_common()})

    def poll(self) -> None:
        if self.producer is not None:
            self.producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        if self.producer is not None:
            self.producer.flush(timeout_s)

    def record(self, smp: ShadowSample, verdict: Verdict, signals: dict[str, float], dt: float | None) -> None:
        d, c = smp.default, verdict
        metrics.SHADOW_EVENTS.labels("scored").inc()
        metrics.SHADOW_DECISIONS.labels(d.decision.value, c.decision.value).inc()
        for code, outcome in reason_outcomes([r.code.value for r in d.reasons], [r.code.value for r in c.reasons]):
            metrics.SHADOW_REASON_AGREEMENT.labels(code, outcome).inc()
        if self.producer is None:
            return
        body = shadow_record(smp, verdict, self.model_ref, signals, self.share, dt, self.via)
        headers = cloudevent_headers(body["event_id"], SHADOW_EVENT_TYPE, self.source, now_utc())
        headers.append((SHADOW_HEADER, b"1"))
        try:
            self.producer.produce(self.topic, json.dumps(body, separators=(",", ":")).encode(),
                                  smp.event.image_id.encode(), headers=headers, on_delivery=_delivered)
        except Exception as e:  # noqa: BLE001 (best effort: never retried, counted)
            log.warning("shadow record not produced", extra={"error": repr(e)})
            metrics.SHADOW_PUBLISH_ERRORS.inc()


def _delivered(err: Any, _msg: Any) -> None:
    if err is not None:
        metrics.SHADOW_PUBLISH_ERRORS.inc()


def shadow_record(smp: ShadowSample, verdict: Verdict, model: ModelRef, signals: dict[str, float], share: float,
                  inference_s: float | None, via: str = "worker") -> dict[str, Any]:
    """The candidate's image_scored for the event, plus `shadow`: the default verdict it is compared with, and
    `via`: which process judged it ("worker"; "api": the scoring API, whose `source_event_id` is the request's id)."""
    ev, d = smp.event, smp.default
    scored = ImageScored(
        event_id=scored_event_id(ev.event_id, f"shadow\x00{model.version}", verdict.policy),
        source_event_id=ev.event_id, image_id=ev.image_id, listing_id=ev.listing_id, seller_id=ev.seller_id,
        role=ev.role, content_sha256=smp.sha256, content_verified=smp.verified, trigger=ev.trigger,
        score=verdict.score, decision=verdict.decision, reasons=verdict.reasons, signals=signals, model=model,
        policy=verdict.policy, cached=smp.cached, scored_at=now_utc(),
        timings={} if inference_s is None else {"inference_ms": round(inference_s * 1000, 3)})
    body = json.loads(scored.model_dump_json())
    body["shadow"] = {
        "sample": share,
        "via": via,
        "url": ev.url,
        "default": {"decision": d.decision.value, "score": d.score, "reasons": [r.code.value for r in d.reasons],
                    "model": smp.default_model.model_dump(), "policy": d.policy.model_dump()},
    }
    return body
