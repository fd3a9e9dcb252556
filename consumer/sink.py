"""The sink: Redis write + produce `image_scored` / DLQ records, and their delivery reports.

One thread owns the producer. An event counts as done (its offset may be committed) only
in the delivery report that says the broker acknowledged its output (idempotent producer,
acks=all). Every produce error is handled, none kills the thread:

| error                                                     | output topic            | DLQ topic                        |
|-----------------------------------------------------------|-------------------------|----------------------------------|
| retriable (broker away, timeout, leader change, ...)      | produced again, backoff | produced again, backoff          |
| record too large                                          | fatal                   | sent again truncated (below)     |
| any other permanent error (unknown topic, authorization)  | fatal                   | fatal                            |

A truncated DLQ record keeps the key and the headers, cuts the value to
`DLQ_TRUNCATED_BYTES` (or to nothing if even that is refused) and adds
`imagegate_truncated`, `imagegate_original_size` and `imagegate_original_sha256`.
Fatal means: readiness and liveness fail, the worker stops consuming and exits non-zero;
offsets of undelivered events are never committed, so nothing is lost.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from consumer import events, metrics
from consumer.cache import ResultCache
from consumer.ordering import Outcome
from consumer.work import WorkItem

log = logging.getLogger("imagegate.sink")

DLQ_TRUNCATED_BYTES = 8192
# Producer settings that at-least-once depends on: applied last, nothing overrides them.
SAFE_PRODUCER = {"enable.idempotence": True, "acks": "all"}
_RECORD_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
_PERMANENT = _RECORD_TOO_LARGE | {
    KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.INVALID_RECORD, KafkaError._INVALID_ARG,
    KafkaError.POLICY_VIOLATION, KafkaError._UNKNOWN_PARTITION,
}


_KEPT_HEADERS = {"imagegate_replay_of", "imagegate_trigger"}


def is_permanent(err: KafkaError) -> bool:
    return err.fatal() or err.code() in _PERMANENT


@dataclass
class Record:
    out: Outcome
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    attempts: int = 0
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


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
        self._retry: list[tuple[float, Record]] = []
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.thread = threading.Thread(target=self._run, name="sink", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # -- from the ordered emitter (any pipeline thread) --------------------------------
    def send(self, out: Outcome) -> None:
        self._q.put(self._scored(out) if out.scored is not None else self._dead_letter(out))

    def _scored(self, out: Outcome) -> Record:
        body = out.scored
        assert body is not None
        headers = events.cloudevent_headers(body.event_id, "dev.imagegate.image_scored.v1", self.source, events.now_utc())
        tp = out.item.source.header("traceparent")
        if tp:
            headers.append(("traceparent", tp))
        return Record(out, self.topic_out, body.image_id.encode(), body.model_dump_json().encode(), headers)

    def _dead_letter(self, out: Outcome) -> Record:
        """The original payload, byte for byte, with headers saying why and where from."""
        item, src = out.item, out.item.source
        # our own DLQ headers are replaced; the replay and trigger marks stay, so a replay loop shows
        headers = [(k, v) for k, v in src.headers if not k.startswith("imagegate_") or k in _KEPT_HEADERS]
        headers += [
            (events.DLQ_HEADER_ERROR, out.dlq_error.encode("utf-8", "replace")[:4000]),
            (events.DLQ_HEADER_STAGE, out.dlq_stage.encode()),
            (events.DLQ_HEADER_TOPIC, src.topic.encode()),
            (events.DLQ_HEADER_PARTITION, str(src.partition).encode()),
            (events.DLQ_HEADER_OFFSET, str(src.offset).encode()),
            (events.DLQ_HEADER_FAILED_AT, events.now_utc().isoformat().encode()),
            # tries in all: failed attempts counted by the chain (at least the one that failed)
            (events.DLQ_HEADER_ATTEMPTS, str(max(1, item.failures + item.transient_failures)).encode()),
        ]
        key = src.key if src.key is not None else (item.event.image_id.encode() if item.event else None)
        log.warning("event sent to DLQ", extra={**item.log_ids(), "stage": out.dlq_stage, "error": out.dlq_error})
        return Record(out, self.topic_dlq, key, src.value or b"", headers)

    def pending(self) -> int:
        return self._q.qsize() + len(self._retry) + len(self.producer)

    # -- the sink thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._beat()
            try:
                batch = self._drain()
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

    def _drain(self, limit: int = 512) -> list[Record]:
        out: list[Record] = []
        try:
            out.append(self._q.get(timeout=0.01))
            while len(out) < limit:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return out

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
        rec.attempts += 1
        delay = min(30.0, 0.5 * 2 ** min(rec.attempts, 6))
        log.error("delivery failed, will produce again", extra={"error": str(err), "topic": rec.topic,
                                                                "attempt": rec.attempts, "retry_in_s": delay})
        self._retry.append((time.monotonic() + delay, rec))

    def _refused(self, rec: Record, err: KafkaError) -> None:
        """A permanent refusal: truncate a DLQ record, otherwise stop loudly."""
        if rec.topic == self.topic_dlq and err.code() in _RECORD_TOO_LARGE and rec.value:
            self._truncate(rec, err)
            self._produce(rec)
            return
        self._fail(f"broker refused a record for {rec.topic} permanently: {err.str()} ({err.name()})")

    def _truncate(self, rec: Record, err: KafkaError) -> None:
        original = rec.value
        keep = 0 if rec.truncated else DLQ_TRUNCATED_BYTES  # refused again at 8 KiB: send no value at all
        rec.value = original[:keep]
        if not rec.truncated:
            rec.headers += [(events.DLQ_HEADER_TRUNCATED, b"1"),
                            (events.DLQ_HEADER_ORIGINAL_SIZE, str(len(original)).encode()),
                            (events.DLQ_HEADER_ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode())]
        rec.truncated = True
        metrics.DLQ_TRUNCATED.inc()
        log.warning("DLQ record refused by the broker, sending it truncated",
                    extra={**rec.out.item.log_ids(), "error": err.str(), "original_bytes": len(original),
                           "sent_bytes": len(rec.value)})

    def _fail(self, why: str) -> None:
        if self.fatal is None:
            self.fatal = why
            log.critical("fatal produce error: the worker stops", extra={"error": why})
            self._on_fatal(why)

    def _requeue_due(self) -> None:
        if not self._retry:
            return
        now = time.monotonic()
        due = [r for t, r in self._retry if t <= now]
        self._retry = [(t, r) for t, r in self._retry if t > now]
        for rec in due:
            metrics.RETRIES.labels("produce").inc()
            self._produce(rec)

    def stop(self, flush_timeout_s: float) -> None:
        deadline = time.monotonic() + flush_timeout_s
        while self.pending() and time.monotonic() < deadline and not self.fatal:
            time.sleep(0.02)
        self._stop.set()
        self.thread.join(timeout=5)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
