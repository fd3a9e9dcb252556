"""The sink: Redis write + produce `image_scored` / DLQ records, and their delivery reports.

One thread owns the producer. An event counts as done (its offset may be committed) only
in the delivery report that says the broker acknowledged its output (idempotent producer,
acks=all). Every produce error is handled, none kills the thread:

| error                                                     | output topic            | DLQ topic                        |
|-----------------------------------------------------------|-------------------------|----------------------------------|
| retriable (broker away, timeout, leader change, ...)      | produced again, backoff | produced again, backoff          |
| record too large                                          | fatal                   | sent again truncated (records.py)|
| any other permanent error (unknown topic, authorization)  | fatal                   | fatal                            |

Building the records, and cutting a refused DLQ record down: consumer/records.py.
Fatal means: readiness and liveness fail, the worker stops consuming and exits non-zero;
offsets of undelivered events are never committed, so nothing is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from consumer import metrics, records
from consumer.cache import ResultCache
from consumer.ordering import Outcome
from consumer.records import Record
from consumer.work import WorkItem

log = logging.getLogger("imagegate.sink")

# Producer settings that at-least-once depends on: applied last, nothing overrides them.
SAFE_PRODUCER = {"enable.idempotence": True, "acks": "all"}
_RECORD_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
_PERMANENT = _RECORD_TOO_LARGE | {
    KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.INVALID_RECORD, KafkaError._INVALID_ARG,
    KafkaError.POLICY_VIOLATION, KafkaError._UNKNOWN_PARTITION,
}


def is_permanent(err: KafkaError) -> bool:
    return err.fatal() or err.code() in _PERMANENT


def _drain(q: "queue.Queue[Record]", limit: int = 512) -> list[Record]:
    """What is queued, up to `limit`, waiting briefly for the first record."""
    out: list[Record] = []
    try:
        out.append(q.get(timeout=0.01))
        while len(out) < limit:
            out.append(q.get_nowait())
    except queue.Empty:
        pass
    return out


class _Later:
    """Records waiting out their backoff before they are produced again."""

    def __init__(self) -> None:
        self._items: list[tuple[float, Record]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, rec: Record) -> float:
        rec.attempts += 1
        delay = min(30.0, 0.5 * 2 ** min(rec.attempts, 6))
        self._items.append((time.monotonic() + delay, rec))
        return delay

    def due(self) -> list[Record]:
        now = time.monotonic()
        due = [r for t, r in self._items if t <= now]
        self._items = [(t, r) for t, r in self._items if t > now]
        return due


class Sink:
    def __init__(self, producer_conf: dict[str, Any], topic_out: str, topic_dlq: str, source: str,
                 cache: ResultCache | None, on_done: Callable[[WorkItem, Outcome], None],
                 on_fatal: Callable[[str], None], heartbeat: Callable[[], None]):
        conf = {"linger.ms": 5, "compression.type": "lz4", "delivery.timeout.ms": 60_000,
                "logger": logging.getLogger("imagegate.kafka"), **producer_conf, **SAFE_PRODUCER}
        self.producer = Producer(conf)
        self.topic_out = topic_out
        self.topic_dlq = topic_dlq
        self.source = source
        self.cache = cache
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._beat = heartbeat
        self._q: queue.Queue[Record] = queue.Queue()
        self._retry = _Later()
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.thread = threading.Thread(target=self._run, name="sink", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # -- from the ordered emitter (any pipeline thread) --------------------------------
    def send(self, out: Outcome) -> None:
        rec = (records.scored(out, self.topic_out, self.source) if out.scored is not None
               else records.dead_letter(out, self.topic_dlq))
        self._q.put(rec)

    def pending(self) -> int:
        return self._q.qsize() + len(self._retry) + len(self.producer)

    # -- the sink thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._beat()
            try:
                batch = _drain(self._q)
                if batch:
                    self._write_cache(batch)
                    for rec in batch:
                        self._produce(rec)
                    self.producer.poll(0)
                else:
                    self.producer.poll(0.02)
                self._requeue_due()
            except Exception as e:  # never let the thread die silently
                log.exception("sink loop error")
                self._fail(f"sink error: {type(e).__name__}: {e}")

    def _write_cache(self, batch: list[Record]) -> None:
        if self.cache is None or self.fatal:
            return
        writes = [(r.out.item, r.out.scored) for r in batch if r.out.scored is not None]
        self.cache.put_many(writes)

    def _produce(self, rec: Record) -> None:
        if self.fatal:
            return  # stopping: undelivered events stay uncommitted and are consumed again
        while not self._stop.is_set():
            try:
                self.producer.produce(rec.topic, rec.value, rec.key, headers=rec.headers,
                                      on_delivery=lambda err, msg, rec=rec: self._report(rec, err))
                return
            except BufferError:  # local queue full: serve reports to make room
                self._beat()
                self.producer.poll(0.1)
            except KafkaException as e:
                self._refused(rec, e.args[0])
                return

    def _report(self, rec: Record, err: KafkaError | None) -> None:
        if err is None:
            if rec.out.scored is None:
                metrics.EVENTS_DLQ.labels(rec.out.dlq_stage).inc()
            self._on_done(rec.out.item, rec.out)
            return
        metrics.PRODUCE_ERRORS.inc()
        if is_permanent(err):
            self._refused(rec, err)
            return
        delay = self._retry.add(rec)
        log.error("delivery failed, will produce again", extra={"error": str(err), "topic": rec.topic,
                                                                "attempt": rec.attempts, "retry_in_s": delay})

    def _refused(self, rec: Record, err: KafkaError) -> None:
        """A permanent refusal: truncate a DLQ record, otherwise stop loudly."""
        if rec.topic == self.topic_dlq and err.code() in _RECORD_TOO_LARGE and rec.value:
            records.truncate(rec, err.str())
            metrics.DLQ_TRUNCATED.inc()
            self._produce(rec)
            return
        self._fail(f"broker refused a record for {rec.topic} permanently: {err.str()} ({err.name()})")

    def _fail(self, why: str) -> None:
        if self.fatal is None:
            self.fatal = why
            log.critical("fatal produce error: the worker stops", extra={"error": why})
            self._on_fatal(why)

    def _requeue_due(self) -> None:
        for rec in self._retry.due():
            metrics.RETRIES.labels("produce").inc()
            self._produce(rec)

    def stop(self, flush_timeout_s: float) -> None:
        deadline = time.monotonic() + flush_timeout_s
        while self.pending() and time.monotonic() < deadline and not self.fatal:
            time.sleep(0.02)
        self._stop.set()
        self.thread.join(timeout=5)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
