"""The secure stack (`deploy/local/stack start --secure`: three SASL_SSL brokers with ACLs,
Redis with TLS and ACL users), started once per session in its own stack dir, and helpers to
run the real worker and clients as one principal or another."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from bench.stack import Stack, free_port, settings_for
from tests.harness import REPO, WorkerProcess, _gone

# the stack's own CA maker (deploy/local is not a package; found the way its entry point finds it)
sys.path.insert(0, str(REPO / "deploy" / "local"))
from stackctl.pki import make_ca  # noqa: E402,F401

TOPICS = ("image_uploaded", "image_scored", "image_uploaded.dlq")  # the names the stack's ACLs grant


class SecureStack(Stack):
    def secure(self, *args: str, **kw):
        return self.run(args[0], "--secure", *args[1:], **kw)

    def env_of(self, user: str) -> dict[str, str]:
        out = self.secure("env", "--user", user).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if line.strip())

    def kafka_conf(self, user: str) -> dict[str, str]:
        """librdkafka settings of `user`, as the worker would build them from `env --secure`."""
        env = self.env_of(user)
        conf = {k.removeprefix("IMAGEGATE_KAFKA__"): v for k, v in env.items() if k.startswith("IMAGEGATE_KAFKA__")}
        return {"bootstrap.servers": env["IMAGEGATE_KAFKA_BOOTSTRAP"], **conf}

    def pids(self) -> list[int]:
        return [p for p in (self.secure_pid(n) for n in ("kafka-1", "kafka-2", "kafka-3", "redis")) if p]

    def secure_pid(self, name: str) -> int | None:
        f = self.root / "secure" / name / f"{name}.pid"
        return int(f.read_text()) if f.exists() else None


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory):
    s = SecureStack(tmp_path_factory.mktemp("secure-stack"))
    s.run("install", timeout=900)
    s.secure("start", timeout=300)
    started = s.pids()
    try:
        _create_topics(s)
        yield s
    finally:
        s.secure("stop", check=False, timeout=120)
        for pid in started:  # never leave a broker behind, even if a test failed
            if not _gone(pid):
                os.kill(pid, 9)


def _create_topics(s: SecureStack) -> None:
    """As `operator` (the CLI's principal): replication factor 3, so one broker may die."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(s.kafka_conf("operator"))
    for topic, fut in admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=3) for t in TOPICS],
                                          operation_timeout=60).items():
        fut.result(timeout=90)


@pytest.fixture(scope="session")
def secure_env(secure_stack, plumbing_model) -> dict[str, str]:
    """The worker's environment: `env --secure` (worker principal) + the plumbing model."""
    env = dict(os.environ)
    env.update(secure_stack.env_of("worker"))
    env.update({
        "IMAGEGATE_MODEL_PATH": str(plumbing_model), "IMAGEGATE_DEVICE": "cpu", "IMAGEGATE_INFERENCE_THREADS": "1",
        "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_FETCH_RETRIES": "2",
        "IMAGEGATE_FETCH_BACKOFF_MS": "20", "IMAGEGATE_FETCH_TIMEOUT_S": "5", "IMAGEGATE_METRICS_HOST": "127.0.0.1",
        "IMAGEGATE_LOG_LEVEL": "INFO",
    })
    return env


def operator_settings(stack: SecureStack):
    return settings_for({**os.environ, **stack.env_of("operator")})


def worker(env: dict[str, str], log: Path, **extra: str) -> WorkerProcess:
    return WorkerProcess({**env, "IMAGEGATE_METRICS_PORT": str(free_port()), **extra}, log)


def wait_log(w: WorkerProcess, needle: str, timeout: float = 90) -> bool:
    """True once the worker's log holds `needle` (case-insensitive), or False when it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle.lower() in w.log_path.read_text(errors="replace").lower():
            return True
        if w.proc is not None and w.proc.poll() is not None:
            return needle.lower() in w.log_path.read_text(errors="replace").lower()
        time.sleep(0.3)
    return False


def committed(conf: dict[str, str], group: str) -> dict[tuple[str, int], int]:
    """Committed offsets of `group` on the stack's topics (admin view)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(conf)
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t in TOPICS for p in (0, 1)])]
    res = admin.list_consumer_group_offsets(req)[group].result(timeout=30)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def launch(w: WorkerProcess) -> WorkerProcess:
    """Start the worker without waiting for readiness (the fail-closed tests expect none)."""
    import subprocess

    w.proc = subprocess.Popen([sys.executable, "-m", "consumer"], env=w.env, cwd=REPO,
                              stdout=open(w.log_path, "ab"), stderr=subprocess.STDOUT)
    return w
