"""Flow control: which assigned partitions are paused, for backpressure and backfill priority.

- Backpressure: at `max_in_flight` unfinished events (not counting those parked for a
  delayed retry) every partition pauses; it resumes at half.
- Priority: partitions of the backfill topic also pause while live work is in flight above
  a quarter of the bound, so a backfill never starves fresh uploads.
- After a rebalance the wanted state is applied to the whole assignment again (`reapply`),
  so no partition stays paused (or unpaused) by accident when partitions move while paused.

Called only from the poll-loop thread (the consumer's one owner), so it needs no lock.
"""

from __future__ import annotations

import logging

from confluent_kafka import TopicPartition

from consumer import metrics
from consumer.config import Settings
from consumer.offsets import TP, OffsetTracker

log = logging.getLogger("imagegate.loop")


class FlowControl:
    def __init__(self, settings: Settings, tracker: OffsetTracker):
        self.s = settings
        self.tracker = tracker
        self.paused: set[TP] = set()
        self._full = False  # in-flight reached the bound and has not drained to half yet
        self._reapply = False  # after a rebalance: pause/resume the whole assignment again

    def reapply(self) -> None:
        """The assignment changed: the next `apply` sets every partition's state explicitly."""
        self._reapply = True

    def forget(self, tp: TP) -> None:
        self.paused.discard(tp)

    def apply(self, consumer, assignment: set[TP]) -> None:
        n = self.tracker.in_flight()
        metrics.IN_FLIGHT.set(n)
        want = self._wanted(n, assignment)
        if want == self.paused and not self._reapply:
            return
        resume = (assignment if self._reapply else self.paused) - want
        pause = want if self._reapply else want - self.paused
        if resume:
            consumer.resume([TopicPartition(t, p) for t, p in resume])
        if pause:
            consumer.pause([TopicPartition(t, p) for t, p in pause])
        log.debug("pause state", extra={"paused": sorted(f"{t}[{p}]" for t, p in want), "in_flight": n})
        self.paused, self._reapply = want, False

    def _wanted(self, n: int, assignment: set[TP]) -> set[TP]:
        """The partitions that should be paused with `n` events in flight."""
        limit = self.s.max_in_flight
        if not self._full and n >= limit:
            self._full = True
            log.info("paused consumption: in-flight at bound", extra={"in_flight": n})
        elif self._full and n <= limit // 2:
            self._full = False
            log.info("resumed consumption", extra={"in_flight": n})
        metrics.PAUSED.set(1 if self._full else 0)
        if self._full:
            return set(assignment)
        backfill = self.s.topic_backfill
        if backfill and self.tracker.in_flight({self.s.topic_in}) >= max(1, limit // 4):
            return {tp for tp in assignment if tp[0] == backfill}
        return set()
