"""Rebalance and commit bookkeeping: what this worker owns, and the offsets it stores and commits.

- Offsets: only the highest contiguous completed offset is stored (`OffsetTracker`), and
  auto-commit commits what was stored; revoke and shutdown commit synchronously.
- Epochs: each assignment of a partition gets a new epoch; work carries it, so a completion
  from before a revoke can never count in a later assignment of the same partition.
- Rebalancing is incremental (KIP-848 `group.protocol=consumer`, or cooperative-sticky with
  the classic protocol); a revoke stops taking work for those partitions, waits up to
  `revoke_timeout_s` for their in-flight work, stores and commits, then lets go.

The callbacks run inside `consume()`, on the poll-loop thread, like every other consumer call.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer import metrics
from consumer.config import Settings
from consumer.flow import FlowControl
from consumer.health import Health
from consumer.offsets import TP, OffsetTracker
from consumer.ordering import Emitter

log = logging.getLogger("imagegate.loop")


class Assignment:
    def __init__(self, settings: Settings, tracker: OffsetTracker, emitter: Emitter, health: Health, flow: FlowControl):
        self.s = settings
        self.tracker = tracker
        self.emitter = emitter
        self.health = health
        self.flow = flow
        self.owned: set[TP] = set()
        self.closing = False  # set before close(): the revoke it triggers must not wait again

    # -- offsets ---------------------------------------------------------------------------
    def store(self, consumer, keys: list[TP] | None = None) -> None:
        todo = self.tracker.to_store(keys)
        if not todo:
            return
        try:
            consumer.store_offsets(offsets=[TopicPartition(t, p, o) for t, p, o in todo])
        except KafkaException as e:
            log.warning("store_offsets failed", extra={"error": str(e)})

    def commit(self, consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed", extra={"error": str(e)})

    # -- rebalance callbacks ---------------------------------------------------------------
    def on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            self.tracker.assign(tp.topic, tp.partition)
            self.owned.add((tp.topic, tp.partition))
        consumer.incremental_assign(partitions)
        self.flow.reapply()
        self.flow.apply(consumer, self.owned)  # new partitions obey the current pause state before their first fetch
        self._changed()
        self.health.broker_ok = True
        log.info("partitions assigned", extra={"partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})

    def on_revoke(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        deadline = time.monotonic() + (0 if self.closing else self.s.revoke_timeout_s)
        while self.tracker.in_flight_for(keys) and time.monotonic() < deadline and not self.health.fatal:
            time.sleep(0.02)  # pipeline and sink threads keep completing meanwhile
            self.health.beat()
        self.store(consumer, keys)
        self.commit(consumer)
        dropped = self.tracker.in_flight_for(keys, include_waiting=True)
        self._let_go(keys)
        log.info("partitions revoked", extra={"partitions": [f"{t}[{p}]" for t, p in keys], "unfinished_redelivered": dropped})

    def on_lost(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._let_go(keys)
        log.warning("partitions lost (no commit possible)", extra={"partitions": [f"{t}[{p}]" for t, p in keys]})

    def _let_go(self, keys: list[TP]) -> None:
        for t, p in keys:
            self.tracker.forget(t, p)  # later completions of this epoch are ignored
            self.emitter.forget_partition(t, p)
            self.owned.discard((t, p))
            self.flow.forget((t, p))
            try:
                metrics.LAG.remove(t, str(p))
            except KeyError:
                pass
        self.flow.reapply()
        self._changed()

    def _changed(self) -> None:
        self.health.assigned = len(self.owned)
        metrics.ASSIGNED.set(len(self.owned))
