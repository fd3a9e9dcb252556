"""Sink stage: cache write (Redis) + `image_scored` / DLQ produce, and delivery reports.

One thread owns this stage: it drains results, writes them to Redis in one pipeline,
produces them to Kafka and serves the producer's delivery reports. An event counts as
done (its offset may be committed) only in the delivery report that says the broker
acknowledged it (idempotent producer, acks=all). Failed deliveries are produced again
with backoff, never dropped: nothing is lost while the broker is away.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from confluent_kafka import KafkaError, Producer

from consumer import events, metrics
from consumer.cache import ResultCache
from consumer.work import WorkItem

log = logging.getLogger("imagegate.sink")


@dataclass
class _Out:
    item: WorkItem
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    body: dict[str, Any] | None  # None for DLQ records
    content: dict[str, Any] | None = None  # content-level result to cache by hash
    attempts: int = 0


class Sink:
    def __init__(self, producer_conf: dict[str, Any], topic_out: str, topic_dlq: str, source: str,
                 cache: ResultCache | None, on_done: Callable[[WorkItem, dict[str, Any] | None], None]):
        conf = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "delivery.timeout.ms": 60_000,
            "logger": logging.getLogger("imagegate.kafka"),  # librdkafka logs as JSON lines too
            **producer_conf,
        }
        self.producer = Producer(conf)
        self.topic_out = topic_out
        self.topic_dlq = topic_dlq
        self.source = source
        self.cache = cache
        self._on_done = on_done
        self._q: queue.Queue[_Out] = queue.Queue()
        self._retry: list[tuple[float, _Out]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- called from pipeline threads --------------------------------------------
    def scored(self, item: WorkItem, body: dict[str, Any], content: dict[str, Any] | None = None) -> None:
        headers = events.cloudevent_headers(body["event_id"], "dev.imagegate.image_scored.v1", self.source, events.now_utc())
        tp = item.traceparent()
        if tp:
            headers.append(("traceparent", tp))
        value = json.dumps(body, separators=(",", ":")).encode()
        self._q.put(_Out(item, self.topic_out, body["image_id"].encode(), value, headers, body, content))

    def dead_letter(self, item: WorkItem, stage: str, error: str) -> None:
        """The original payload, byte for byte, with headers saying why and where from."""
        headers = [(k, v) for k, v in item.headers if not k.startswith("imagegate_")]
        headers += [
            (events.DLQ_HEADER_ERROR, error.encode("utf-8", "replace")[:4000]),
            (events.DLQ_HEADER_STAGE, stage.encode()),
            (events.DLQ_HEADER_TOPIC, item.topic.encode()),
            (events.DLQ_HEADER_PARTITION, str(item.partition).encode()),
            (events.DLQ_HEADER_OFFSET, str(item.offset).encode()),
            (events.DLQ_HEADER_FAILED_AT, events.now_utc().isoformat().encode()),
            # item.attempts counts failed tries (Worker._fail increments it before giving up);
            # an event dead-lettered on its first try (invalid event) has 0 and was tried once.
            (events.DLQ_HEADER_ATTEMPTS, str(max(1, item.attempts)).encode()),
        ]
        key = item.msg_key if item.msg_key is not None else (item.event.image_id.encode() if item.event else None)
        log.warning("event sent to DLQ", extra={"stage": stage, "error": error, "topic": item.topic,
                                                  "partition": item.partition, "offset": item.offset,
                                                  "event_id": item.event.event_id if item.event else None})
        metrics.EVENTS_DLQ.labels(stage).inc()
        self._q.put(_Out(item, self.topic_dlq, key, item.value or b"", headers, None))

    def pending(self) -> int:
        return self._q.qsize() + len(self._retry) + len(self.producer)

    # -- the sink thread -----------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._drain()
            if batch:
                if self.cache is not None:
                    self.cache.put_many([(o.body, o.content) for o in batch if o.body is not None])
                for out in batch:
                    self._produce(out)
                self.producer.poll(0)
            else:
                self.producer.poll(0.02)
            self._requeue_due()

    def _drain(self, limit: int = 512) -> list[_Out]:
        out: list[_Out] = []
        try:
            out.append(self._q.get(timeout=0.01))
            while len(out) < limit:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return out

    def _produce(self, out: _Out) -> None:
        def report(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                self._on_done(out.item, out.body)
                return
            out.attempts += 1
            metrics.PRODUCE_ERRORS.inc()
            delay = min(30.0, 0.5 * 2 ** min(out.attempts, 6))
            log.error("delivery failed, will produce again", extra={"error": str(err), "topic": out.topic,
                                                                    "attempt": out.attempts, "retry_in_s": delay})
            self._retry.append((time.monotonic() + delay, out))

        while True:
            try:
                self.producer.produce(out.topic, out.value, out.key, headers=out.headers, on_delivery=report)
                return
            except BufferError:  # local queue full: serve reports to make room
                self.producer.poll(0.1)

    def _requeue_due(self) -> None:
        if not self._retry:
            return
        now = time.monotonic()
        due = [o for t, o in self._retry if t <= now]
        self._retry = [(t, o) for t, o in self._retry if t > now]
        for out in due:
            metrics.RETRIES.labels("produce").inc()
            self._produce(out)

    def stop(self, flush_timeout_s: float) -> None:
        deadline = time.monotonic() + flush_timeout_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(timeout=5)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
