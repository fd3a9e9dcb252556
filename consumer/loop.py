"""The Kafka loop: the one owner of the consumer.

Poll, validate and hand work to the chain; the client's error and statistics callbacks
(connection errors go through `BrokerLog`: one line per change, not one per attempt);
draining at shutdown. Nothing else touches the consumer, so every consumer call happens on
this thread. Its helpers, called from here only: pause/resume for backpressure and backfill
priority (consumer/flow.py); rebalance callbacks, assignment epochs, storing and committing
offsets (consumer/rebalance.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consumer import metrics
from consumer.broker_log import CONNECTIVITY, BrokerLog, ClientLog
from consumer.config import Settings
from consumer.events import InvalidEvent, parse_uploaded
from consumer.flow import FlowControl
from consumer.health import Health
from consumer.offsets import OffsetTracker
from consumer.ordering import Emitter
from consumer.rebalance import Assignment
from consumer.work import Source, WorkItem

log = logging.getLogger("imagegate.loop")

# Settings at-least-once depends on: applied last, and refused in IMAGEGATE_KAFKA__* (consumer/config.py).
SAFE_CONSUMER = {"enable.auto.offset.store": False, "enable.auto.commit": True}


def consumer_config(s: Settings, error_cb: Callable, stats_cb: Callable, logger: Any = None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "group.id": s.group_id,
        "auto.offset.reset": "earliest",
        "auto.commit.interval.ms": 1000,
        "statistics.interval.ms": 5000,
        "error_cb": error_cb,
        "stats_cb": stats_cb,
        "logger": logger or logging.getLogger("imagegate.kafka"),  # librdkafka logs as JSON lines too
    }
    if s.group_protocol == "consumer":
        conf["group.protocol"] = "consumer"  # KIP-848: the broker assigns incrementally
    else:
        conf["partition.assignment.strategy"] = "cooperative-sticky"
    if s.group_instance_id:
        conf["group.instance.id"] = s.group_instance_id
    return {**conf, **s.kafka_common(), **SAFE_CONSUMER}


class KafkaLoop:
    def __init__(self, settings: Settings, tracker: OffsetTracker, emitter: Emitter, submit: Callable[[list[WorkItem]], None],
                 health: Health, stop: threading.Event, awaiting_ack: Callable[[], int],
                 broker_log: BrokerLog | None = None):
        self.s = settings
        self.tracker = tracker
        self.emitter = emitter
        self.submit = submit
        self.health = health
        self.stop = stop
        self.topics = [settings.topic_in] + ([settings.topic_backfill] if settings.topic_backfill else [])
        self.flow = FlowControl(settings, tracker, awaiting_ack)
        self.assignment = Assignment(settings, tracker, emitter, health, self.flow)
        self.broker = broker_log or BrokerLog(log)
        self.consumer = Consumer(consumer_config(settings, self._on_error, self._on_stats, ClientLog(self.broker)))

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        a = self.assignment
        self.consumer.subscribe(self.topics, on_assign=a.on_assign, on_revoke=a.on_revoke, on_lost=a.on_lost)
        log.info("consuming", extra={"topics": self.topics, "group": self.s.group_id,
                                     "protocol": self.s.group_protocol, "instance": self.s.group_instance_id})
        while not self.stop.is_set() and not self.health.fatal:
            self.health.beat()
            self.broker.tick()
            a.store(self.consumer)
            self.flow.apply(self.consumer, a.owned)
            items = [self._accept(msg) for msg in
                     self.consumer.consume(num_messages=self.s.consume_batch, timeout=self.s.consume_timeout_s)]
            batch = [it for it in items if it is not None]
            if batch:
                self.submit(batch)  # a batch at once: the pipeline looks up its claimed hashes in one round trip

    def _accept(self, msg) -> WorkItem | None:
        """The work item for a valid message of ours, or None (an error, not ours, or dead-lettered)."""
        err = msg.error()
        if err is not None:
            if err.fatal() or err.code() == KafkaError._FATAL:  # the consumer is unusable: stop loudly, get restarted
                self.health.set_fatal(f"consumer: {err.str()}")
            if err.code() != KafkaError._PARTITION_EOF:
                log.error("consume error", extra={"error": str(err)})
            return None
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        epoch = self.tracker.epoch(topic, partition)
        if epoch is None or not self.tracker.start(topic, partition, offset, epoch):
            return None  # not ours any more, or already tracked (re-delivered after a seek)
        self.health.broker_ok = True
        self.broker.ok()
        metrics.EVENTS_CONSUMED.inc()
        src = Source(topic, partition, offset, epoch, msg.key(), msg.value(), tuple(msg.headers() or ()))
        self.emitter.take_slot(src)
        item = WorkItem(src)
        try:
            item.event = parse_uploaded(src.value, self.s.event_max_bytes)
        except InvalidEvent as e:
            metrics.EVENTS_INVALID.inc()
            self.emitter.dead_letter(item, "validate", str(e))
            return None
        except Exception as e:  # never let one message take the loop down
            log.exception("unexpected error accepting a message")
            self.emitter.dead_letter(item, "consume", f"{type(e).__name__}: {e}")
            return None
        return item

    # -- client callbacks (inside consume(), on this thread) ----------------------------------
    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() == KafkaError._FATAL:
            self.health.set_fatal(f"consumer: {err.str()}")
        if err.code() in CONNECTIVITY:
            self.health.broker_ok = False
            self.broker.failed(str(err))  # logged once per outage, then summarised
            return
        log.warning("kafka client error", extra={"error": str(err)})

    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for pid, p in t.get("partitions", {}).items():
                    if pid == "-1" or (topic, int(pid)) not in self.assignment.owned:
                        continue
                    lag = p.get("consumer_lag", -1)
                    if lag >= 0:
                        metrics.LAG.labels(topic, pid).set(lag)
            self.health.broker_ok = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
            if self.health.broker_ok:
                self.broker.ok()
        except (ValueError, KeyError, TypeError):
            pass

    # -- shutdown -------------------------------------------------------------------------
    def drain_and_close(self, deadline: float) -> int:
        """Stop taking work, let in-flight work finish (storing as it does), commit, close.

        Returns the number of events left unfinished (they are consumed again by the next owner)."""
        a = self.assignment
        if a.owned:
            try:
                self.consumer.pause([TopicPartition(t, p) for t, p in a.owned])
            except KafkaException:
                pass
        while self.tracker.in_flight() and time.monotonic() < deadline and not self.health.fatal:
            a.store(self.consumer)
            self.health.beat()
            time.sleep(0.05)
        left = self.tracker.in_flight() + self.tracker.waiting()
        a.store(self.consumer)
        a.commit(self.consumer)
        a.closing = True  # the revoke that close() triggers must not wait again
        self.consumer.close()
        self.broker.close()
        return left
