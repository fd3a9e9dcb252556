"""Kafka clients for the operator tools, configured exactly like the worker's."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import Settings

T = TypeVar("T")


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
    """Create the input, output, DLQ (and backfill and shadow, when configured) topics if missing; returns the
    names created."""
    admin = AdminClient(s.kafka_common())
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    want = [s.topic_in, s.topic_out, s.topic_dlq] + ([s.topic_backfill] if s.topic_backfill else []) \
        + ([s.shadow_topic] if s.shadow_topic else [])
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


_COORDINATOR_ERRORS = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT}


def with_coordinator_retry(call: Callable[[], T], timeout_s: float = 30.0) -> T:
    """Group calls (committed offsets, commit, describe) fail with "not coordinator" or "load in
    progress" while a broker has just started or the group's coordinator moves; those are
    transient, so retry them with backoff up to `timeout_s`. Anything else is raised at once."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as e:
            err = e.args[0] if e.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code not in _COORDINATOR_ERRORS and not (isinstance(err, KafkaError) and err.retriable()):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2.0, delay * 2)
