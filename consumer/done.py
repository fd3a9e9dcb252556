"""What happens when the broker acknowledged an event's output (image_scored or DLQ record).

Only here does an input offset complete, so it may be committed; the outcome counters and
the per-event log line are written from the same place, so they count delivered outcomes.
"""

from __future__ import annotations

import logging
import time

from consumer import metrics
from consumer.offsets import OffsetTracker
from consumer.ordering import Outcome
from consumer.work import WorkItem

events_log = logging.getLogger("imagegate.events")  # one line per finished event (IMAGEGATE_LOG_EVENTS)


class Completion:
    def __init__(self, tracker: OffsetTracker):
        self.tracker = tracker

    def __call__(self, item: WorkItem, out: Outcome) -> None:
        src = item.source
        self.tracker.complete(src.topic, src.partition, src.offset, src.epoch)
        e2e = time.monotonic() - item.consumed_at
        metrics.E2E_SECONDS.observe(e2e)
        extra = {**item.log_ids(), "stage": "done", "outcome": "dlq"}
        body = out.scored
        if body is not None:
            metrics.EVENTS_SCORED.labels(str(body.cached).lower()).inc()
            metrics.DECISIONS.labels(body.decision.value).inc()
            for r in body.reasons:
                metrics.REASONS.labels(r.code.value).inc()
            metrics.SCORE.observe(body.score)
            extra.update(outcome=body.decision.value, cached=body.cached, score=body.score,
                         reasons=[r.code.value for r in body.reasons],
                         timings={**body.timings, "acked_ms": round(e2e * 1000, 3)})
        else:
            extra.update(dlq_stage=out.dlq_stage, timings={"acked_ms": round(e2e * 1000, 3)})
        events_log.info("event done", extra=extra)
