"""One interface for every step, and the chain that runs them.

A step does one job on a `WorkItem` and returns `NEXT` (go on) or `HANDED_OFF` (another
thread owns the item now: a batch, a single-flight leader, the retry queue). Steps that
produce the content (lookups, fetch, decode, model) are skipped once the outcome is
known (a cache hit, a seller-side rejection), so a short-cut is never a special path.

`Chain.run` is the only place that times steps, counts their outcomes and decides what
a failure means (consumer/retry.py has the table); it also drops work whose partition
was revoked since it was consumed (the epoch check), at every step boundary.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from typing import Callable, Protocol, Sequence

from consumer import metrics
from consumer.retry import DelayQueue, Transient, jittered
from consumer.work import WorkItem

log = logging.getLogger("imagegate.pipeline")


class Flow(enum.Enum):
    NEXT = "next"
    HANDED_OFF = "handed_off"


NEXT, HANDED_OFF = Flow.NEXT, Flow.HANDED_OFF


class Step(Protocol):
    name: str
    produces_content: bool  # skipped once item.known

    def __call__(self, item: WorkItem) -> Flow: ...


class Failures:
    """What the chain does with a failed item: delayed retry, quick retry or DLQ."""

    def __init__(self, retry_delays_s: Sequence[float], processing_retries: int, delayed: DelayQueue,
                 resubmit: Callable[[WorkItem], None], dead_letter: Callable[[WorkItem, str, str], None],
                 park: Callable[[WorkItem, bool], None], on_abandon: Callable[[WorkItem], None]):
        self.retry_delays_s = list(retry_delays_s)
        self.processing_retries = processing_retries
        self.delayed = delayed
        self.resubmit = resubmit
        self.dead_letter = dead_letter
        self.park = park  # tracker: parked items do not count toward the in-flight bound
        self.on_abandon = on_abandon  # single-flight: followers of a failed leader start over

    def handle(self, item: WorkItem, step: str, exc: BaseException) -> None:
        self.on_abandon(item)
        if isinstance(exc, Transient):
            self._transient(item, exc)
        else:
            self._unexpected(item, step, exc)

    def _transient(self, item: WorkItem, exc: Transient) -> None:
        n = item.transient_failures
        item.transient_failures += 1
        if n < len(self.retry_delays_s):
            delay = jittered(self.retry_delays_s[n])
            log.warning("our transient failure, retrying later", extra={
                **item.log_ids(), "stage": exc.stage, "error": str(exc), "attempt": n + 1, "retry_in_s": round(delay, 1)})
            metrics.RETRIES.labels(exc.stage).inc()
            item.reset_for_retry()
            self.park(item, True)
            if self.delayed.put(item, delay):
                return
            self.park(item, False)
            self.dead_letter(item, exc.stage, f"{exc} (retry queue full: {self.delayed.capacity} events waiting)")
            return
        total = sum(self.retry_delays_s)
        self.dead_letter(item, exc.stage, f"{exc} (gave up after {item.transient_failures} attempts over ~{total:g}s; "
                                          "not the seller's problem)")

    def _unexpected(self, item: WorkItem, step: str, exc: BaseException) -> None:
        item.failures += 1
        if item.failures <= self.processing_retries:
            log.warning("step failed, retrying", extra={**item.log_ids(), "stage": step, "error": repr(exc),
                                                        "attempt": item.failures})
            metrics.RETRIES.labels(step).inc()
            item.reset_for_retry()
            self.park(item, True)
            if not self.delayed.put(item, random.uniform(0, 0.1 * 2 ** item.failures)):
                self.park(item, False)
                self.dead_letter(item, step, f"{type(exc).__name__}: {exc}")
            return
        log.error("step failed, dead-lettering", extra={**item.log_ids(), "stage": step, "error": repr(exc)})
        self.dead_letter(item, step, f"{type(exc).__name__}: {exc}")


class Chain:
    """The steps in order; `run(item, start)` walks them on the calling thread."""

    def __init__(self, steps: Sequence[Step], failures: Failures, is_current: Callable[[WorkItem], bool]):
        self.steps = list(steps)
        self.failures = failures
        self.is_current = is_current
        self._index = {s.name: i for i, s in enumerate(self.steps)}

    def index(self, name: str) -> int:
        return self._index[name]

    def run(self, item: WorkItem, start: int = 0) -> None:
        for step in self.steps[start:]:
            if not self.is_current(item):
                metrics.DROPPED_STALE.inc()  # revoked since consumed: the next owner does it again
                self.failures.on_abandon(item)
                return
            if step.produces_content and item.known:
                continue
            rejected_before = _rejected(item)
            t0 = time.monotonic()
            try:
                flow = step(item)
            except Exception as e:  # noqa: BLE001 (one place decides what any failure means)
                metrics.observe_step(step.name, time.monotonic() - t0, ok=False)
                self.failures.handle(item, step.name, e)
                return
            dt = time.monotonic() - t0
            metrics.observe_step(step.name, dt, ok=_rejected(item) == rejected_before)  # a seller problem found here
            if step.name in ("fetch", "decode"):
                item.timings[f"{step.name}_ms"] = round(dt * 1000, 3)
            if flow is HANDED_OFF:
                return

    def resume_after(self, name: str, item: WorkItem) -> None:
        self.run(item, self._index[name] + 1)


def _rejected(item: WorkItem) -> bool:
    return item.rejection is not None or (item.content is not None and item.content.reject is not None)
