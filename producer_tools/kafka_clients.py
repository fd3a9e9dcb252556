"""Kafka clients for the operator tools, configured exactly like the worker's."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import Settings


def producer(s: Settings) -> Producer:
    return Producer({**s.kafka_common(), "enable.idempotence": True, "acks": "all", "linger.ms": 5})


def reader(s: Settings, group_id: str | None = None, from_beginning: bool = True) -> Consumer:
    """A consumer for reading topics (tail, demo, tests): its own group unless told otherwise."""
    return Consumer({
        **s.kafka_common(),
        "group.id": group_id or f"imagegate-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": group_id is not None,
    })


def ensure_topics(s: Settings, partitions: int | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create the input, output, DLQ (and backfill, when configured) topics if missing; returns the names created."""
    admin = AdminClient(s.kafka_common())
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    want = [s.topic_in, s.topic_out, s.topic_dlq] + ([s.topic_backfill] if s.topic_backfill else [])
    n = partitions or s.topic_partitions
    new = [NewTopic(t, num_partitions=n, replication_factor=int(s.kafka.get("replication.factor", 1)))
           for t in want if t not in existing]
    created = []
    if new:
        for topic, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result()
                created.append(topic)
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
    return created


def decode_value(raw: bytes | None) -> Any:
    import json

    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
