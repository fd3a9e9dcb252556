"""The dead-letter topic: read it in a bounded range, filter, summarise, and replay it safely.

A replay is only trustworthy if the group's committed offset means "everything before this
was handled". So the range read is fixed when the command starts (committed offset, or the
beginning, up to the end offsets of that moment), every republished record must be
acknowledged by the broker before anything is committed, and per partition the commit
stops before the first record that was not handled (failed, or left out by a filter unless
`ack_unmatched`). Records replayed past such a gap are replayed again by a later run:
at-least-once, recognisable by their unchanged `event_id`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from consumer import events
from consumer.config import Settings
from producer_tools.exit_codes import UsageError
from producer_tools.kafka_clients import common as kafka_common
from producer_tools.kafka_clients import with_coordinator_retry

REPLAY_OF_HEADER = "imagegate_replay_of"


@dataclass(frozen=True)
class DlqRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    stage: str
    error: str
    failed_at: datetime | None
    attempts: int | None
    truncated: bool
    original_size: int | None
    original_sha256: str | None
    source_topic: str | None = None

    @classmethod
    def from_message(cls, msg) -> "DlqRecord":
        headers = [(k, v or b"") for k, v in (msg.headers() or [])]
        h = {k: v.decode("utf-8", "replace") for k, v in headers}
        return cls(
            topic=msg.topic(), partition=msg.partition(), offset=msg.offset(), key=msg.key(), value=msg.value(),
            headers=headers, stage=h.get(events.DLQ_HEADER_STAGE, "unknown") or "unknown",
            error=h.get(events.DLQ_HEADER_ERROR, ""), failed_at=_failed_at(h.get(events.DLQ_HEADER_FAILED_AT), msg),
            attempts=_int(h.get(events.DLQ_HEADER_ATTEMPTS)),
            truncated=h.get(events.DLQ_HEADER_TRUNCATED, "").lower() in ("1", "true", "yes"),
            original_size=_int(h.get(events.DLQ_HEADER_ORIGINAL_SIZE)),
            original_sha256=h.get(events.DLQ_HEADER_ORIGINAL_SHA256),
            source_topic=h.get(events.DLQ_HEADER_TOPIC),
        )

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def image_id(self) -> str:
        return (self.key or b"").decode("utf-8", "replace")

    def line(self) -> str:
        when = self.failed_at.strftime("%Y-%m-%dT%H:%M:%S") if self.failed_at else "?"
        return (f"{self.partition}:{self.offset}  {when:<19}  {self.stage:<12}  {self.image_id or '?':<24}  "
                f"{'[truncated] ' if self.truncated else ''}{self.error[:120]}")

    def as_json(self, preview: int = 300) -> dict:
        return {"partition": self.partition, "offset": self.offset, "image_id": self.image_id, "stage": self.stage,
                "error": self.error, "failed_at": self.failed_at.isoformat() if self.failed_at else None,
                "attempts": self.attempts, "truncated": self.truncated,
                "value": (self.value or b"")[:preview].decode("utf-8", "replace")}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _failed_at(text: str | None, msg) -> datetime | None:
    """The worker's header; the record's broker timestamp when the header is missing or bad."""
    if text:
        try:
            t = datetime.fromisoformat(text)
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    kind, ms = msg.timestamp()
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if kind and ms > 0 else None


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an RFC 3339 time, or a duration back from now (`90s`, `30m`, `6h`, `2d`)."""
    m = _RELATIVE.match(text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (now or datetime.now(timezone.utc)) - timedelta(**{unit: float(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: use an RFC 3339 time (2026-11-29T10:00:00Z) or 30m, 6h, 2d") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class DlqFilter:
    stages: frozenset[str] = frozenset()
    error: str | None = None  # case-insensitive substring of the error text
    since: datetime | None = None

    def matches(self, r: DlqRecord) -> bool:
        if self.stages and r.stage not in self.stages:
            return False
        if self.error and self.error.lower() not in r.error.lower():
            return False
        if self.since and (r.failed_at is None or r.failed_at < self.since):
            return False
        return True

    @property
    def active(self) -> bool:
        return bool(self.stages or self.error or self.since)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


def error_kind(error: str, width: int = 90) -> str:
    """The error with its particulars (URLs, quoted values, numbers) blanked, so a summary groups
    "HTTP 503 from https://a/1.jpg" and "HTTP 502 from https://b/2.jpg" under one line."""
    text = _NUMBER.sub("N", _QUOTED.sub("'…'", _URL.sub("<url>", error.strip().splitlines()[0] if error.strip() else "")))
    return (text[: width - 1] + "…") if len(text) > width else (text or "(no error header)")


# --- reading -----------------------------------------------------------------------


class DlqReader:
    """Reads one topic from a start offset (the group's committed one, or the beginning) up to the
    end offsets as of `open()`. Records that arrive while it runs are left for the next run."""

    def __init__(self, settings: Settings, topic: str, group: str | None, timeout_s: float = 30.0):
        self.topic = topic
        self.group = group
        self.timeout_s = timeout_s
        self.consumer = Consumer({
            **kafka_common(settings),
            "group.id": group or f"imagegate-dlq-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        })
        self.start: dict[int, int] = {}
        self.low: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.exists = True

    def open(self) -> "DlqReader":
        md = self.consumer.list_topics(self.topic, timeout=self.timeout_s).topics.get(self.topic)
        if md is None or md.error is not None:
            self.exists = False
            return self
        tps = [TopicPartition(self.topic, p) for p in sorted(md.partitions)]
        committed = {}
        if self.group:
            got = with_coordinator_retry(lambda: self.consumer.committed(tps, timeout=self.timeout_s), self.timeout_s)
            committed = {tp.partition: tp.offset for tp in got}
        for tp in tps:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=self.timeout_s)
            start = committed.get(tp.partition, -1)
            self.low[tp.partition] = low
            self.start[tp.partition] = max(low, start) if start >= 0 else low
            self.end[tp.partition] = high
        return self

    @property
    def size(self) -> int:
        return sum(self.end[p] - self.low[p] for p in self.low)

    @property
    def pending(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)

    def records(self) -> Iterator[DlqRecord]:
        todo = {p for p in self.start if self.end[p] > self.start[p]}
        if not todo:
            return
        self.consumer.assign([TopicPartition(self.topic, p, self.start[p]) for p in sorted(todo)])
        idle_until = time.monotonic() + self.timeout_s
        while todo:
            if time.monotonic() > idle_until:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no progress reading {self.topic} for "
                                                                      f"{self.timeout_s:.0f}s (partitions {sorted(todo)})"))
            for msg in self.consumer.consume(500, 0.5):
                p = msg.partition()
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(p)
                        continue
                    raise KafkaException(msg.error())
                idle_until = time.monotonic() + self.timeout_s
                if p not in todo or msg.offset() >= self.end[p]:
                    todo.discard(p)
                    continue
                yield DlqRecord.from_message(msg)
                if msg.offset() >= self.end[p] - 1:
                    todo.discard(p)

    def commit(self, offsets: dict[int, int]) -> None:
        if offsets:
            tps = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
            with_coordinator_retry(lambda: self.consumer.commit(offsets=tps, asynchronous=False), self.timeout_s)

    def close(self) -> None:
        self.consumer.close()


# --- replaying ---------------------------------------------------------------------


def replay_value(value: bytes | None) -> bytes | None:
    """Mark a JSON-object event as a replay; anything else goes back byte for byte (it was
    dead-lettered for what it is, and a replay must not hide that)."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if not isinstance(data, dict):
        return value
    data["trigger"] = "replay"
    return json.dumps(data, separators=(",", ":")).encode()


def replay_headers(r: DlqRecord) -> list[tuple[str, bytes]]:
    """Original headers (traceparent, ce_*) without the DLQ's own, plus where the replay came from."""
    return [(k, v) for k, v in r.headers if not k.startswith("imagegate_")] + [(REPLAY_OF_HEADER, r.where.encode())]


@dataclass
class ReplayReport:
    replayed: int = 0
    failed: int = 0
    skipped_filtered: int = 0
    skipped_truncated: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    left: int = 0  # records in the range the commit did not pass (failed or filtered out)
    commit_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.commit_error is None


@dataclass
class _Slot:
    """One record's outcome. The record itself (its value may be large) is kept only while it may
    have to be sent again, so a replay of a big DLQ holds outcomes, not payloads."""

    offset: int
    where: str
    image_id: str
    outcome: str  # "pending" | "ok" | "failed" | "filtered" | "truncated"
    record: DlqRecord | None = None
    error: str | None = None
    code: int | None = None

    @classmethod
    def of(cls, r: DlqRecord, outcome: str) -> "_Slot":
        return cls(r.offset, r.where, r.image_id or "?", outcome, r if outcome == "pending" else None)

    def delivered(self, err, _msg=None) -> None:
        self.outcome, self.error = ("ok", None) if err is None else ("failed", str(err))
        self.code = err.code() if isinstance(err, KafkaError) else None
        if err is None:
            self.record = None


def replay_target(to: str | None, inputs: list[str]) -> Callable[[DlqRecord], str]:
    """`--to` when given; else the input topic the record came from (so a dead-lettered backfill
    event goes back to the backfill topic), if it is one of ours; else the first input topic.
    The header is data, so it can only choose among the configured input topics."""
    def pick(r: DlqRecord) -> str:
        if to:
            return to
        return r.source_topic if r.source_topic in inputs else inputs[0]

    return pick


def _isolate_batch_rejections(producer: Producer, target: Callable[[DlqRecord], str], slots: list[_Slot],
                              flush_timeout_s: float) -> None:
    """The broker refuses a whole record batch when it is over the topic's max.message.bytes, so
    small records batched with one oversized record fail with it. Send those once more one at a
    time: only the records the broker refuses on their own stay failed."""
    for s in slots:
        if s.outcome != "failed" or s.code != KafkaError.MSG_SIZE_TOO_LARGE or s.record is None:
            continue
        r = s.record
        s.outcome = "pending"
        try:
            producer.produce(target(r), replay_value(r.value), r.key, headers=replay_headers(r), on_delivery=s.delivered)
        except KafkaException as e:  # refused by the client itself: final
            s.delivered(e.args[0] if e.args else e)
            continue
        producer.flush(flush_timeout_s)


def replay(reader: DlqReader, producer: Producer | None, target: Callable[[DlqRecord], str], filt: DlqFilter, *,
           ack_unmatched: bool = False, flush_timeout_s: float = 60.0, on_line: Callable[[str], None] = print,
           on_record: Callable[[], None] = lambda: None) -> ReplayReport:
    """Republish the matching records to `target(record)`; `producer=None` is a dry run (nothing sent or committed)."""
    report = ReplayReport()
    slots: dict[int, list[_Slot]] = {p: [] for p in reader.start}

    for r in reader.records():
        on_record()
        if not filt.matches(r):
            slot = _Slot.of(r, "filtered")
        elif r.truncated:
            slot = _Slot.of(r, "truncated")
            on_line(f"skipped (truncated): {r.where} image {r.image_id or '?'}: the DLQ holds only the first "
                    f"{len(r.value or b'')} of {r.original_size or '?'} bytes (sha256 {r.original_sha256 or '?'}); "
                    "re-publish the original from its source")
        elif producer is None:
            slot = _Slot.of(r, "ok")
            on_line(f"would replay: {r.where} image {r.image_id or '?'} to {target(r)} [{r.stage}] {error_kind(r.error)}")
        else:
            slot = _Slot.of(r, "pending")
            while True:
                try:
                    producer.produce(target(r), replay_value(r.value), r.key, headers=replay_headers(r),
                                     on_delivery=slot.delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as e:  # refused before sending (e.g. over the client's message.max.bytes)
                    slot.delivered(e.args[0] if e.args else e)
                    break
            producer.poll(0)
        slots[r.partition].append(slot)

    if producer is not None:
        producer.flush(flush_timeout_s)
        _isolate_batch_rejections(producer, target, [s for ss in slots.values() for s in ss], flush_timeout_s)
    for p, ss in slots.items():
        for s in ss:
            if s.outcome == "pending":
                s.outcome, s.error = "failed", f"not acknowledged by the broker within {flush_timeout_s:.0f}s"
            if s.outcome == "failed":
                on_line(f"failed: {s.where} image {s.image_id}: {s.error}")
        report.replayed += sum(s.outcome == "ok" for s in ss)
        report.failed += sum(s.outcome == "failed" for s in ss)
        report.skipped_filtered += sum(s.outcome == "filtered" for s in ss)
        report.skipped_truncated += sum(s.outcome == "truncated" for s in ss)
        handled = {"ok", "truncated"} | ({"filtered"} if ack_unmatched else set())
        prefix = 0
        while prefix < len(ss) and ss[prefix].outcome in handled:
            prefix += 1
        report.left += len(ss) - prefix
        if prefix == len(ss) and ss:
            report.committed[p] = reader.end[p]  # also passes offsets with no record (transaction markers)
        elif prefix:
            report.committed[p] = ss[prefix - 1].offset + 1

    if producer is not None:
        try:
            reader.commit(report.committed)
        except KafkaException as e:
            report.commit_error = str(e.args[0] if e.args else e)
            report.committed = {}
    else:
        report.committed = {}
    return report
