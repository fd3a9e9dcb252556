"""Tests for the local dev/test stack (deploy/local/stack): real Kafka + real Redis.

These run their OWN stack in a temporary IMAGEGATE_STACK_DIR, so they never touch the
stack other integration tests use (default <repo>/.stack).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import Stack, _gone

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    s.run("install", timeout=900)
    s.run("start")
    pids = {n: s.pid(n) for n in ("kafka", "redis")}
    yield s
    s.run("stop", check=False)
    for n in ("kafka", "redis"):
        for pid in {pids[n], s.pid(n)} - {None}:
            if not _gone(pid):  # never leave a broker behind, even if a test failed
                os.kill(pid, 9)


def test_env_output_is_exact_key_value_lines(stack):
    out = stack.run("env").stdout.splitlines()
    assert [line.split("=", 1)[0] for line in out] == ["IMAGEGATE_KAFKA_BOOTSTRAP", "IMAGEGATE_REDIS_URL"]
    env = stack.env_vars()
    host, port = env["IMAGEGATE_KAFKA_BOOTSTRAP"].split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert env["IMAGEGATE_REDIS_URL"].startswith("redis://127.0.0.1:")
    assert env["IMAGEGATE_REDIS_URL"].endswith("/0")


def test_status_and_idempotent_start(stack):
    r = stack.run("status")
    assert "kafka: running" in r.stdout and "redis: running" in r.stdout
    before = (stack.pid("kafka"), stack.pid("redis"))
    stack.run("start")  # already running -> no-op success
    assert (stack.pid("kafka"), stack.pid("redis")) == before


def test_kafka_round_trip(stack):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = stack.env_vars()["IMAGEGATE_KAFKA_BOOTSTRAP"]
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futs[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    sent = [f"msg-{i}".encode() for i in range(20)]
    for i, v in enumerate(sent):
        producer.produce(topic, key=str(i).encode(), value=v)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        consumer.commit(asynchronous=False)  # exercises the group coordinator / __consumer_offsets
    finally:
        consumer.close()
    assert got == sent


def test_auto_create_is_off(stack):
    from confluent_kafka.admin import AdminClient

    bootstrap = stack.env_vars()["IMAGEGATE_KAFKA_BOOTSTRAP"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"never-created-{uuid.uuid4().hex[:8]}"
    md = admin.list_topics(topic=name, timeout=10)
    assert md.topics[name].error is not None  # UNKNOWN_TOPIC_OR_PART, not auto-created


def test_redis_set_get(stack):
    import redis

    r = redis.Redis.from_url(stack.env_vars()["IMAGEGATE_REDIS_URL"])
    r.set("stack-test", b"hello")
    assert r.get("stack-test") == b"hello"
    assert r.config_get("save")["save"] == ""
    assert r.config_get("appendonly")["appendonly"] == "no"


def test_redis_restart_reuses_port(stack):
    import redis

    url = stack.env_vars()["IMAGEGATE_REDIS_URL"]
    old_pid = stack.pid("redis")
    stack.run("stop", "redis")
    assert _gone(old_pid)
    assert stack.run("status", check=False).returncode != 0
    stack.run("start", "redis")
    assert stack.env_vars()["IMAGEGATE_REDIS_URL"] == url
    assert stack.pid("redis") != old_pid
    assert redis.Redis.from_url(url).ping()
    assert stack.run("status").returncode == 0


def test_kafka_hard_kill_restart_same_address(stack):
    from confluent_kafka.admin import AdminClient

    bootstrap = stack.env_vars()["IMAGEGATE_KAFKA_BOOTSTRAP"]
    old_pid = stack.pid("kafka")
    stack.run("stop", "--hard", "kafka")
    assert _gone(old_pid)
    stack.run("start", "kafka")
    assert stack.env_vars()["IMAGEGATE_KAFKA_BOOTSTRAP"] == bootstrap
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    assert any(t.startswith("stack-test-") for t in md.topics)  # data survived the restart


def test_stop_leaves_no_process(stack):
    pids = [stack.pid("kafka"), stack.pid("redis")]
    assert all(pids)
    stack.run("stop")
    for pid in pids:
        assert _gone(pid), f"pid {pid} still running after stop"
    assert stack.pid("kafka") is None and stack.pid("redis") is None
    r = stack.run("status", check=False)
    assert r.returncode != 0 and "kafka: stopped" in r.stdout and "redis: stopped" in r.stdout
    assert (stack.root / "kafka" / "logs" / "server.log").stat().st_size > 0  # logs kept
    stack.run("stop")  # stopping a stopped stack is fine


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
