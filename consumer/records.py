"""The records the sink produces: `image_scored` events, DLQ records, and a DLQ record cut
down after the broker refused it as too large.

A DLQ record carries the original payload byte for byte, with headers saying why and where
from. A truncated one keeps the key and the headers, cuts the value to
`DLQ_TRUNCATED_BYTES` (or to nothing if even that is refused) and adds
`imagegate_truncated`, `imagegate_original_size` and `imagegate_original_sha256`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from consumer import events
from consumer.ordering import Outcome

log = logging.getLogger("imagegate.sink")

DLQ_TRUNCATED_BYTES = 8192
_KEPT_HEADERS = {"imagegate_replay_of", "imagegate_trigger"}


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


def scored(out: Outcome, topic: str, source: str) -> Record:
    body = out.scored
    assert body is not None
    headers = events.cloudevent_headers(body.event_id, "dev.imagegate.image_scored.v1", source, events.now_utc())
    tp = out.item.source.header("traceparent")
    if tp:
        headers.append(("traceparent", tp))
    return Record(out, topic, body.image_id.encode(), body.model_dump_json().encode(), headers)


def dead_letter(out: Outcome, topic: str) -> Record:
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
    return Record(out, topic, key, src.value or b"", headers)


def truncate(rec: Record, why: str) -> None:
    """Cut a refused DLQ record down in place: to `DLQ_TRUNCATED_BYTES`, then to nothing."""
    original = rec.value
    keep = 0 if rec.truncated else DLQ_TRUNCATED_BYTES  # refused again at 8 KiB: send no value at all
    rec.value = original[:keep]
    if not rec.truncated:
        rec.headers += [(events.DLQ_HEADER_TRUNCATED, b"1"),
                        (events.DLQ_HEADER_ORIGINAL_SIZE, str(len(original)).encode()),
                        (events.DLQ_HEADER_ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode())]
    rec.truncated = True
    log.warning("DLQ record refused by the broker, sending it truncated",
                extra={**rec.out.item.log_ids(), "error": why, "original_bytes": len(original),
                       "sent_bytes": len(rec.value)})
