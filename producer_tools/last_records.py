"""The last N records of a topic, newest last: what `imagegate report` and `policy diff` look at.

Why not a consumer group: reviewing must not move anybody's offsets, and "the last N" is
a question about the end of each partition, so partitions are assigned directly at
max(low, high - N) and read up to the high watermark seen at the start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from consumer.config import Settings
from producer_tools.kafka_clients import reader


@dataclass
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    value: Any  # parsed JSON, or None when the value is not JSON


def last_records(s: Settings, topic: str, n: int, timeout_s: float = 10.0) -> list[Record]:
    """Up to `n` most recent records over all partitions (by broker timestamp), oldest first."""
    c = reader(s)
    try:
        meta = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic!r} not found on {s.kafka_bootstrap}")
        want: dict[int, tuple[int, int]] = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                want[p] = (max(low, high - n), high)
        if not want:
            return []
        c.assign([TopicPartition(topic, p, start) for p, (start, _) in want.items()])
        out: list[Record] = []
        left = {p: high for p, (_, high) in want.items()}
        idle = 0
        while left and idle < int(timeout_s / 0.5):
            msgs = c.consume(500, 0.5)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                if m.error():
                    continue
                try:
                    value = json.loads(m.value()) if m.value() is not None else None
                except ValueError:
                    value = None
                out.append(Record(m.partition(), m.offset(), m.timestamp()[1], value))
                if m.offset() + 1 >= left.get(m.partition(), 0):
                    left.pop(m.partition(), None)
        out.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        return out[-n:]
    finally:
        c.close()
