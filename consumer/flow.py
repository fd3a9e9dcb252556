"""Flow control: which assigned partitions are paused, for backpressure and backfill priority.

- Backpressure, two bounds, each pausing every partition and resuming at half:
  - `max_in_flight` events still being worked on (fetch, decode, model), not counting those
    parked for a delayed retry: the bound on memory, a decoded image each;
  - `max_awaiting_ack` results handed to the producer that the broker has not acknowledged: a
    record each, so this bound can be much larger. Counting them apart is what lets cache hits
    flow: a hit is judged and handed over at once, and with one bound for both the loop paused
    every few hundred hits while their acks came back, and librdkafka fetched the paused
    partitions' messages again after each resume (1,418 hits/s; README "Capacity").
- Priority: partitions of the backfill topic also pause while live work is in flight above
  a quarter of the bound, so a backfill never starves fresh uploads.
- After a rebalance the wanted state is applied to the whole assignment again (`reapply`),
  so no partition stays paused (or unpaused) by accident when partitions move while paused.

Called only from the poll-loop thread (the consumer's one owner), so it needs no lock.
"""

from __future__ import annotations

import logging
from typing import Callable

from confluent_kafka import TopicPartition

from consumer import metrics
from consumer.config import Settings
from consumer.offsets import TP, OffsetTracker

log = logging.getLogger("imagegate.loop")


class FlowControl:
    def __init__(self, settings: Settings, tracker: OffsetTracker, awaiting_ack: Callable[[], int]):
        self.s = settings
        self.tracker = tracker
        self.awaiting_ack = awaiting_ack  # the sink's count of results not yet acknowledged (Sink.pending)
        self.paused: set[TP] = set()
        self._full = False  # a bound was reached and has not drained to half yet
        self._reapply = False  # after a rebalance: pause/resume the whole assignment again

    def reapply(self) -> None:
        """The assignment changed: the next `apply` sets every partition's state explicitly."""
        self._reapply = True

    def forget(self, tp: TP) -> None:
        self.paused.discard(tp)

    def apply(self, consumer, assignment: set[TP]) -> None:
        n = self.tracker.in_flight()
        acking = min(n, self.awaiting_ack())  # read apart from n: clamp so the two never disagree below 0
        metrics.IN_FLIGHT.set(n)
        metrics.AWAITING_ACK.set(acking)
        want = self._wanted(n - acking, acking, assignment)
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

    def _wanted(self, working: int, acking: int, assignment: set[TP]) -> set[TP]:
        """The partitions that should be paused with `working` events in the chain and `acking` at the producer."""
        limit, ack_limit = self.s.max_in_flight, self.s.max_awaiting_ack
        if not self._full and (working >= limit or acking >= ack_limit):
            self._full = True
            log.info("paused consumption: in-flight at bound", extra={"in_flight": working, "awaiting_ack": acking})
        elif self._full and working <= limit // 2 and acking <= ack_limit // 2:
            self._full = False
            log.info("resumed consumption", extra={"in_flight": working, "awaiting_ack": acking})
        metrics.PAUSED.set(1 if self._full else 0)
        if self._full:
            return set(assignment)
        backfill = self.s.topic_backfill
        if backfill and self.tracker.in_flight({self.s.topic_in}) >= max(1, limit // 4):
            return {tp for tp in assignment if tp[0] == backfill}
        return set()
