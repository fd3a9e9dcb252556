"""The Kafka loop: the one owner of the consumer.

Poll, validate and hand work to the chain; pause and resume (backpressure and priority);
rebalance callbacks; store and commit offsets; assignment epochs. Nothing else touches the
consumer, so every consumer call happens on this thread.

- Offsets: only the highest contiguous completed offset is stored (`OffsetTracker`), and
  auto-commit commits what was stored; revoke and shutdown commit synchronously.
- Epochs: each assignment of a partition gets a new epoch; work carries it, so a completion
  from before a revoke can never count in a later assignment of the same partition.
- Backpressure: at `max_in_flight` unfinished events (not counting those parked for a
  delayed retry) every partition pauses; it resumes at half. Pauses are re-applied to the
  whole assignment after every rebalance, so no partition stays paused (or unpaused) by
  accident when partitions move while paused.
- Priority: partitions of the backfill topic also pause while live work is in flight above
  a quarter of the bound, so a backfill never starves fresh uploads.
- Rebalancing is incremental (KIP-848 `group.protocol=consumer`, or cooperative-sticky with
  the classic protocol); a revoke stops taking work for those partitions, waits up to
  `revoke_timeout_s` for their in-flight work, stores and commits, then lets go.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consumer import metrics
from consumer.config import Settings
from consumer.events import InvalidEvent, parse_uploaded
from consumer.health import Health
from consumer.offsets import TP, OffsetTracker
from consumer.ordering import Emitter
from consumer.work import Source, WorkItem

log = logging.getLogger("imagegate.loop")

# Settings at-least-once depends on: applied last, and refused in IMAGEGATE_KAFKA__* (consumer/config.py).
SAFE_CONSUMER = {"enable.auto.offset.store": False, "enable.auto.commit": True}


def consumer_config(s: Settings, error_cb: Callable, stats_cb: Callable) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "group.id": s.group_id,
        "auto.offset.reset": "earliest",
        "auto.commit.interval.ms": 1000,
        "statistics.interval.ms": 5000,
        "error_cb": error_cb,
        "stats_cb": stats_cb,
        "logger": logging.getLogger("imagegate.kafka"),  # librdkafka logs as JSON lines too
    }
    if s.group_protocol == "consumer":
        conf["group.protocol"] = "consumer"  # KIP-848: the broker assigns incrementally
    else:
        conf["partition.assignment.strategy"] = "cooperative-sticky"
    if s.group_instance_id:
        conf["group.instance.id"] = s.group_instance_id
    return {**conf, **s.kafka_common(), **SAFE_CONSUMER}


class KafkaLoop:
    def __init__(self, settings: Settings, tracker: OffsetTracker, emitter: Emitter, submit: Callable[[WorkItem], None],
                 health: Health, stop: threading.Event):
        self.s = settings
        self.tracker = tracker
        self.emitter = emitter
        self.submit = submit
        self.health = health
        self.stop = stop
        self.topics = [settings.topic_in] + ([settings.topic_backfill] if settings.topic_backfill else [])
        self._assignment: set[TP] = set()
        self._paused: set[TP] = set()
        self._full = False  # in-flight reached the bound and has not drained to half yet
        self._reapply = False  # after a rebalance: pause/resume the whole assignment again
        self._closing = False
        self.consumer = Consumer(consumer_config(settings, self._on_error, self._on_stats))

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("consuming", extra={"topics": self.topics, "group": self.s.group_id,
                                     "protocol": self.s.group_protocol, "instance": self.s.group_instance_id})
        while not self.stop.is_set() and not self.health.fatal:
            self.health.beat()
            self._store()
            self._flow_control()
            for msg in self.consumer.consume(num_messages=self.s.consume_batch, timeout=self.s.consume_timeout_s):
                self._accept(msg)

    def _accept(self, msg) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal() or err.code() == KafkaError._FATAL:  # the consumer is unusable: stop loudly, get restarted
                self.health.set_fatal(f"consumer: {err.str()}")
            if err.code() != KafkaError._PARTITION_EOF:
                log.error("consume error", extra={"error": str(err)})
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        epoch = self.tracker.epoch(topic, partition)
        if epoch is None or not self.tracker.start(topic, partition, offset, epoch):
            return  # not ours any more, or already tracked (re-delivered after a seek)
        self.health.broker_ok = True
        metrics.EVENTS_CONSUMED.inc()
        src = Source(topic, partition, offset, epoch, msg.key(), msg.value(), tuple(msg.headers() or ()))
        self.emitter.take_slot(src)
        item = WorkItem(src)
        try:
            item.event = parse_uploaded(src.value, self.s.event_max_bytes)
        except InvalidEvent as e:
            metrics.EVENTS_INVALID.inc()
            self.emitter.dead_letter(item, "validate", str(e))
            return
        except Exception as e:  # never let one message take the loop down
            log.exception("unexpected error accepting a message")
            self.emitter.dead_letter(item, "consume", f"{type(e).__name__}: {e}")
            return
        self.submit(item)

    # -- flow control -------------------------------------------------------------------
    def _flow_control(self) -> None:
        n = self.tracker.in_flight()
        metrics.IN_FLIGHT.set(n)
        limit = self.s.max_in_flight
        if not self._full and n >= limit:
            self._full = True
            log.info("paused consumption: in-flight at bound", extra={"in_flight": n})
        elif self._full and n <= limit // 2:
            self._full = False
            log.info("resumed consumption", extra={"in_flight": n})
        metrics.PAUSED.set(1 if self._full else 0)
        want = set(self._assignment) if self._full else set()
        if self.s.topic_backfill and not self._full and self.tracker.in_flight({self.s.topic_in}) >= max(1, limit // 4):
            want = {tp for tp in self._assignment if tp[0] == self.s.topic_backfill}
        if want == self._paused and not self._reapply:
            return
        resume = (self._assignment if self._reapply else self._paused) - want
        pause = want if self._reapply else want - self._paused
        if resume:
            self.consumer.resume([TopicPartition(t, p) for t, p in resume])
        if pause:
            self.consumer.pause([TopicPartition(t, p) for t, p in pause])
        log.debug("pause state", extra={"paused": sorted(f"{t}[{p}]" for t, p in want), "in_flight": n})
        self._paused, self._reapply = want, False

    # -- offsets ---------------------------------------------------------------------------
    def _store(self, keys: list[TP] | None = None) -> None:
        todo = self.tracker.to_store(keys)
        if not todo:
            return
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for t, p, o in todo])
        except KafkaException as e:
            log.warning("store_offsets failed", extra={"error": str(e)})

    def _commit(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed", extra={"error": str(e)})

    # -- rebalance callbacks (inside consume(), on this thread) ---------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            self.tracker.assign(tp.topic, tp.partition)
            self._assignment.add((tp.topic, tp.partition))
        consumer.incremental_assign(partitions)
        self._reapply = True
        self._flow_control()  # new partitions obey the current pause state before their first fetch
        self._assigned_changed()
        self.health.broker_ok = True
        log.info("partitions assigned", extra={"partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})

    def _on_revoke(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        deadline = time.monotonic() + (0 if self._closing else self.s.revoke_timeout_s)
        while self.tracker.in_flight_for(keys) and time.monotonic() < deadline and not self.health.fatal:
            time.sleep(0.02)  # pipeline and sink threads keep completing meanwhile
            self.health.beat()
        self._store(keys)
        self._commit()
        dropped = self.tracker.in_flight_for(keys, include_waiting=True)
        self._let_go(keys)
        log.info("partitions revoked", extra={"partitions": [f"{t}[{p}]" for t, p in keys], "unfinished_redelivered": dropped})

    def _on_lost(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._let_go(keys)
        log.warning("partitions lost (no commit possible)", extra={"partitions": [f"{t}[{p}]" for t, p in keys]})

    def _let_go(self, keys: list[TP]) -> None:
        for t, p in keys:
            self.tracker.forget(t, p)  # later completions of this epoch are ignored
            self.emitter.forget_partition(t, p)
            self._assignment.discard((t, p))
            self._paused.discard((t, p))
            try:
                metrics.LAG.remove(t, str(p))
            except KeyError:
                pass
        self._reapply = True
        self._assigned_changed()

    def _assigned_changed(self) -> None:
        self.health.assigned = len(self._assignment)
        metrics.ASSIGNED.set(len(self._assignment))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() == KafkaError._FATAL:
            self.health.set_fatal(f"consumer: {err.str()}")
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.health.broker_ok = False
        log.warning("kafka client error", extra={"error": str(err)})

    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for pid, p in t.get("partitions", {}).items():
                    if pid == "-1" or (topic, int(pid)) not in self._assignment:
                        continue
                    lag = p.get("consumer_lag", -1)
                    if lag >= 0:
                        metrics.LAG.labels(topic, pid).set(lag)
            self.health.broker_ok = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        except (ValueError, KeyError, TypeError):
            pass

    # -- shutdown -------------------------------------------------------------------------
    def drain_and_close(self, deadline: float) -> int:
        """Stop taking work, let in-flight work finish (storing as it does), commit, close.

        Returns the number of events left unfinished (they are consumed again by the next owner)."""
        if self._assignment:
            try:
                self.consumer.pause([TopicPartition(t, p) for t, p in self._assignment])
            except KafkaException:
                pass
        while self.tracker.in_flight() and time.monotonic() < deadline and not self.health.fatal:
            self._store()
            self.health.beat()
            time.sleep(0.05)
        left = self.tracker.in_flight() + self.tracker.waiting()
        self._store()
        self._commit()
        self._closing = True  # the revoke that close() triggers must not wait again
        self.consumer.close()
        return left
