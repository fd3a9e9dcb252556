"""`imagegate backfill`: re-publish `image_uploaded` for images the platform already has.

After a model or policy version change every cache key changes and the live catalogue was
judged by the old version. A backfill selects what to re-score (a file of `image_id,url,...`,
or the `imagegate:image:*` results in Redis whose model or policy version is not the running
one), writes that selection to a plan file, and publishes it with `trigger: "backfill"`.

Resumable: the checkpoint file holds the run id and how many plan items the broker has
acknowledged as one contiguous prefix. A crash loses at most the items published after the
last checkpoint write: `MAX_IN_FLIGHT + CHECKPOINT_EVERY` duplicates, each recognisable
because an item's `event_id` is derived from the run id and its plan position.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from confluent_kafka import KafkaException, Producer
from pydantic import ValidationError

from consumer.events import ImageUploaded, describe_validation_error, now_utc
from producer_tools.exit_codes import UsageError

TRIGGER_HEADER = "imagegate_trigger"
RUN_HEADER = "imagegate_backfill_run"
IMAGE_KEY_PATTERN = "imagegate:image:*"
MAX_IN_FLIGHT = 1000  # published but not yet acknowledged
CHECKPOINT_EVERY = 500  # acknowledged items between checkpoint writes (also written every second)
DUPLICATE_BOUND = MAX_IN_FLIGHT + CHECKPOINT_EVERY
_EVENT_NS = uuid.UUID("0b6c6f1e-8f7c-4d0e-b8a4-4c1f5a3e2d90")
_FIELDS = ("image_id", "url", "listing_id", "seller_id", "role", "policy", "content_sha256")


@dataclass(frozen=True)
class BackfillItem:
    image_id: str
    url: str
    listing_id: str | None = None
    seller_id: str | None = None
    role: str = "main"
    policy: str | None = None
    content_sha256: str | None = None

    def event(self, run_id: str, index: int) -> ImageUploaded:
        return ImageUploaded(event_id=str(uuid.uuid5(_EVENT_NS, f"{run_id}\x00{index}")), image_id=self.image_id,
                             url=self.url, listing_id=self.listing_id, seller_id=self.seller_id, role=self.role,
                             policy=self.policy, content_sha256=self.content_sha256, occurred_at=now_utc(),
                             trigger="backfill")


@dataclass(frozen=True)
class Skip:
    """A source entry that is not backfilled, and why (counted in the summary)."""

    reason: str
    detail: str | None = None


def _item(fields: dict, where: str) -> BackfillItem | Skip:
    """Validate through the event contract, so a row that would be an invalid event is refused here."""
    values = {k: (str(fields[k]).strip() or None) if fields.get(k) is not None else None for k in _FIELDS}
    values["role"] = values["role"] or "main"
    try:
        ImageUploaded(event_id="x", occurred_at=None, **values)
    except ValidationError as e:
        return Skip("invalid", f"{where}: {describe_validation_error(e)}")
    return BackfillItem(**values)


# --- sources -----------------------------------------------------------------------


def from_file(path: Path) -> Iterator[BackfillItem | Skip]:
    """JSONL (one object per line) or CSV with a header row; needs `image_id` and `url` columns."""
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        first = f.read(1)
        f.seek(0)
        if path.suffix.lower() == ".csv" or (path.suffix.lower() not in (".jsonl", ".ndjson", ".json") and first != "{"):
            reader = csv.DictReader(f)
            missing = {"image_id", "url"} - set(reader.fieldnames or ())
            if missing:
                raise UsageError(f"{path}: CSV header needs columns image_id and url (missing {sorted(missing)})")
            for n, row in enumerate(reader, start=2):
                yield _item(row, f"{path.name} line {n}")
            return
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                yield Skip("invalid", f"{path.name} line {n}: not JSON ({e})")
                continue
            where = f"{path.name} line {n}"
            yield _item(row, where) if isinstance(row, dict) else Skip("invalid", f"{where}: not an object")


def from_redis(client, model_version: str, policy_version: str, batch: int = 500) -> Iterator[BackfillItem | Skip]:
    """Latest results whose model or policy version is not the running one, re-scored under the
    profile and role they were judged with. Needs the `source_url` the worker records."""
    keys: list[bytes] = []

    def judge(raws) -> Iterator[BackfillItem | Skip]:
        for key, raw in zip(keys, raws):
            if raw is None:  # expired between SCAN and MGET
                continue
            try:
                body = json.loads(raw)
                mv, pv = body["model"]["version"], body["policy"]["version"]
            except (ValueError, KeyError, TypeError):
                yield Skip("unreadable", key.decode("utf-8", "replace"))
                continue
            if mv == model_version and pv == policy_version:
                yield Skip("up to date")
                continue
            if not body.get("source_url"):
                yield Skip("no source_url", key.decode("utf-8", "replace"))
                continue
            policy = body.get("policy", {}).get("name")
            yield _item({**body, "url": body["source_url"], "policy": policy, "content_sha256": None},
                        key.decode("utf-8", "replace"))

    for key in client.scan_iter(match=IMAGE_KEY_PATTERN, count=1000):
        keys.append(key)
        if len(keys) >= batch:
            yield from judge(client.mget(keys))
            keys = []
    if keys:
        yield from judge(client.mget(keys))


# --- checkpoint --------------------------------------------------------------------


@dataclass
class Checkpoint:
    """Written atomically (temp file + rename), so a crash mid-write leaves the previous one."""

    run_id: str
    source: str
    topic: str
    total: int
    done: int = 0  # plan items acknowledged by the broker, as one contiguous prefix
    skipped: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: now_utc().isoformat())
    updated_at: str | None = None

    @staticmethod
    def plan_path(path: Path) -> Path:
        return path.with_name(path.name + ".plan.jsonl")

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(f"checkpoint {path} is unreadable ({e}); remove it or pass --restart") from None

    def save(self, path: Path) -> None:
        self.updated_at = now_utc().isoformat()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)


def write_plan(entries: Iterable[BackfillItem | Skip], plan: Path, limit: int | None,
               on_skip: Callable[[Skip], None]) -> tuple[int, Counter[str]]:
    total, skipped = 0, Counter()
    tmp = plan.with_name(plan.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in entries:
            if isinstance(e, Skip):
                skipped[e.reason] += 1
                on_skip(e)
                continue
            if limit is not None and total >= limit:
                skipped["over --limit"] += 1
                continue
            f.write(json.dumps(asdict(e)) + "\n")
            total += 1
    os.replace(tmp, plan)
    return total, skipped


def read_plan(plan: Path, start: int) -> Iterator[tuple[int, BackfillItem]]:
    with plan.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start:
                yield i, BackfillItem(**json.loads(line))


# --- publishing --------------------------------------------------------------------


@dataclass
class BackfillReport:
    run_id: str
    topic: str
    total: int
    resumed_at: int
    published: int = 0  # acknowledged in this run
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


class _Acks:
    """Contiguous prefix of acknowledged plan positions (acks arrive out of order across partitions)."""

    def __init__(self, done: int):
        self.done = done
        self._ahead: set[int] = set()
        self.in_flight = 0
        self.ok = 0
        self.failed = 0
        self.first_error: str | None = None
        self._failed_at: int | None = None

    def sent(self) -> None:
        self.in_flight += 1

    def report(self, index: int, err) -> None:
        self.in_flight -= 1
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)
            self._failed_at = index if self._failed_at is None else min(self._failed_at, index)
            return
        self.ok += 1
        self._ahead.add(index)
        while self.done in self._ahead and (self._failed_at is None or self.done < self._failed_at):
            self._ahead.discard(self.done)
            self.done += 1


def publish_plan(producer: Producer, cp: Checkpoint, cp_path: Path, rate: float | None,
                 on_progress: Callable[[int], None] = lambda n: None,
                 headers_extra: list[tuple[str, bytes]] | None = None) -> BackfillReport:
    report = BackfillReport(cp.run_id, cp.topic, cp.total, cp.done, skipped=dict(cp.skipped))
    acks = _Acks(cp.done)
    headers = [(TRIGGER_HEADER, b"backfill"), (RUN_HEADER, cp.run_id.encode()), *(headers_extra or [])]
    t0 = time.monotonic()
    last_saved, saved_done = t0, cp.done

    def checkpoint(force: bool = False) -> None:
        nonlocal last_saved, saved_done
        now = time.monotonic()
        if acks.done != saved_done and (force or acks.done - saved_done >= CHECKPOINT_EVERY or now - last_saved >= 1.0):
            on_progress(acks.done - saved_done)
            cp.done, saved_done, last_saved = acks.done, acks.done, now
            cp.save(cp_path)

    for n, (index, item) in enumerate(read_plan(Checkpoint.plan_path(cp_path), cp.done)):
        if acks.failed:
            break  # the checkpoint cannot pass a failed item; stop and let a re-run resume there
        if rate:
            while (wait := t0 + n / rate - time.monotonic()) > 0:
                producer.poll(min(wait, 0.05))
        while acks.in_flight >= MAX_IN_FLIGHT:
            producer.poll(0.05)
        value = json.dumps(item.event(cp.run_id, index).model_dump(mode="json", exclude_none=True)).encode()
        while True:
            try:
                producer.produce(cp.topic, value, item.image_id.encode(), headers=headers,
                                 on_delivery=lambda err, _m, i=index: acks.report(i, err))
                acks.sent()
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as e:  # refused by the client (e.g. over message.max.bytes)
                acks.sent()
                acks.report(index, e.args[0] if e.args else e)
                break
        producer.poll(0)
        checkpoint()
    remaining = producer.flush(60)
    checkpoint(force=True)
    report.published = acks.ok
    report.failed = acks.failed + remaining
    report.first_error = acks.first_error or (f"{remaining} events not acknowledged within 60s" if remaining else None)
    report.seconds = time.monotonic() - t0
    return report


def start_or_resume(cp_path: Path, source: str, topic: str, restart: bool,
                    plan: Callable[[Path], tuple[int, Counter[str]]]) -> tuple[Checkpoint, bool]:
    """The checkpoint to continue (and True), or a fresh run with its plan written (and False)."""
    if cp_path.exists() and not restart:
        cp = Checkpoint.load(cp_path)
        if (cp.source, cp.topic) != (source, topic):
            raise UsageError(f"checkpoint {cp_path} belongs to another backfill ({cp.source} -> {cp.topic}); "
                             f"pass --restart to replace it or --checkpoint for a new file")
        if not Checkpoint.plan_path(cp_path).is_file():
            raise UsageError(f"plan {Checkpoint.plan_path(cp_path)} of checkpoint {cp_path} is missing; pass --restart")
        return cp, True
    cp_path.parent.mkdir(parents=True, exist_ok=True)
    total, skipped = plan(Checkpoint.plan_path(cp_path))
    cp = Checkpoint(run_id=str(uuid.uuid4()), source=source, topic=topic, total=total, skipped=dict(skipped))
    cp.save(cp_path)
    return cp, False
