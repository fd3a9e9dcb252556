"""Kafka clients for the operator tools, configured exactly like the worker's."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import Settings
from producer_tools.exit_codes import UsageError

T = TypeVar("T")


# librdkafka's own log lines (a refused connection is logged every few ms while it retries) go
# to this logger, so a command that cannot reach the broker can end with one line instead of
# hundreds; `imagegate` shows them with IMAGEGATE_LOG_LEVEL=DEBUG.
LIBRDKAFKA_LOG = logging.getLogger("imagegate.librdkafka")


def quiet_librdkafka() -> None:
    """librdkafka's retry chatter off the operator's screen unless asked for (the CLI and `make demo`):
    a command's own error line says what failed; IMAGEGATE_LOG_LEVEL=DEBUG shows the client's log too.
    Once per process: a second call would add a second handler and print every line twice."""
    if LIBRDKAFKA_LOG.handlers:
        return
    LIBRDKAFKA_LOG.propagate = False
    if os.environ.get("IMAGEGATE_LOG_LEVEL", "").upper() == "DEBUG":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("librdkafka %(levelname)s %(message)s"))
        LIBRDKAFKA_LOG.addHandler(handler)
        LIBRDKAFKA_LOG.setLevel(logging.DEBUG)
    else:
        LIBRDKAFKA_LOG.addHandler(logging.NullHandler())


def common(s: Settings) -> dict[str, Any]:
    """The worker's client settings plus the log routing above, for every client the tools create."""
    return {**s.kafka_common(), "logger": LIBRDKAFKA_LOG}


def producer(s: Settings) -> Producer:
    return Producer({**common(s), "enable.idempotence": True, "acks": "all", "linger.ms": 5})


def reader(s: Settings, group_id: str | None = None, from_beginning: bool = True) -> Consumer:
    """A consumer for reading topics (tail, demo, tests): its own group unless told otherwise."""
    return Consumer({
        **common(s),
        "group.id": group_id or f"imagegate-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": group_id is not None,
    })


@dataclass(frozen=True)
class TopicPlan:
    """How new topics are created: decided once from the cluster's size and the operator's ask."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int | None  # set on created topics when RF >= 3; else the broker's default
    brokers: int


def plan_topics(brokers: int, partitions: int, replication_factor: int | None, force: bool = False) -> TopicPlan:
    """Replication factor: as asked, else min(3, brokers). A factor the cluster cannot hold is refused,
    and so is RF 1 on a multi-broker cluster unless forced: one broker's disk would then hold the only
    copy of every upload event and every verdict, which is the mistake a default of 1 used to make.
    With RF >= 3, min.insync.replicas = RF - 1, so `acks=all` writes survive one broker down."""
    if brokers < 1:
        raise UsageError("the cluster reported no brokers: cannot choose a replication factor")
    rf = replication_factor if replication_factor is not None else min(3, brokers)
    if rf < 1:
        raise UsageError(f"replication factor must be >= 1 (got {rf})")
    if rf > brokers:
        raise UsageError(f"replication factor {rf} needs at least {rf} brokers; the cluster has {brokers} "
                         f"(use --replication-factor {brokers} or fewer)")
    if rf == 1 and brokers > 1 and not force:
        raise UsageError(f"replication factor 1 on a {brokers}-broker cluster keeps a single copy of every event: "
                         f"use --replication-factor {min(3, brokers)}, or --force if that is really meant")
    return TopicPlan(partitions, rf, max(1, rf - 1) if rf >= 3 else None, brokers)


@dataclass
class TopicsResult:
    plan: TopicPlan
    created: list[str] = field(default_factory=list)
    existing: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (partitions, replicas)


def create_topics(s: Settings, partitions: int | None = None, replication_factor: int | None = None,
                  force: bool = False, timeout_s: float = 30.0) -> TopicsResult:
    """Create the input, output, DLQ (and backfill and shadow, when configured) topics if missing; existing ones
    are left as they are and reported with their partition and replica counts."""
    admin = AdminClient(common(s))
    md = admin.list_topics(timeout=timeout_s)
    plan = plan_topics(len(md.brokers), partitions or s.topic_partitions,
                       replication_factor if replication_factor is not None else s.topic_replication_factor, force)
    want = [s.topic_in, s.topic_out, s.topic_dlq] + ([s.topic_backfill] if s.topic_backfill else []) \
        + ([s.shadow_topic] if s.shadow_topic else [])
    result = TopicsResult(plan)
    for t in want:
        if t in md.topics and md.topics[t].error is None:
            parts = md.topics[t].partitions
            result.existing[t] = (len(parts), min((len(p.replicas) for p in parts.values()), default=0))
    config = {"min.insync.replicas": str(plan.min_insync_replicas)} if plan.min_insync_replicas else {}
    new = [NewTopic(t, num_partitions=plan.partitions, replication_factor=plan.replication_factor, config=config)
           for t in want if t not in result.existing]
    if new:
        for topic, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result()
                result.created.append(topic)
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
    return result


def ensure_topics(s: Settings, partitions: int | None = None, timeout_s: float = 30.0) -> list[str]:
    """`create_topics` with the settings' replication factor; returns the names created."""
    return create_topics(s, partitions, timeout_s=timeout_s).created


def decode_value(raw: bytes | None) -> Any:
    import json

    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


# Errors a reader's poll returns that no amount of waiting fixes: the principal may not read
# the topic or use the group, or the client is dead. A reader that skipped them would look
# like an empty topic (exit 0, no output) to an operator whose ACLs are wrong.
_DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
           KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION}


def raise_if_denied(err: KafkaError | None) -> None:
    """Raise (KafkaException: the CLI's one-line exit 1) for a poll error that waiting cannot fix; else return."""
    if err is not None and (err.fatal() or err.code() in _DENIED):
        raise KafkaException(err)


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
