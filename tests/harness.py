"""Shared test harness: the real local stack, a worker subprocess, topic readers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.stack import Stack, free_port  # noqa: F401 (tests import them from here; bench/stack.py says why they live there)

REPO = Path(__file__).resolve().parents[1]


def _gone(pid: int) -> bool:
    """True when the pid no longer names a live process (a zombie awaiting reaping by
    init counts as gone: it holds no memory, ports or files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on the loopback ops port; (0, "") while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric_sum(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples named `name` whose labels include `labels`, in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()))


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def start_module(module: str, env: dict[str, str], log_path: Path, ready: Callable[[], bool], what: str,
                 wait_ready: float) -> subprocess.Popen:
    """`python -m module` logging to log_path, returned once `ready()` (bounded; a crash fails at once)."""
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + wait_ready
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if ready():
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{what} not ready after {wait_ready}s:\n{log_tail(log_path)}")


class WorkerProcess:
    """`python -m consumer` as a real subprocess, so SIGTERM and kill -9 are real."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.port = int(env["IMAGEGATE_METRICS_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: float = 120.0) -> "WorkerProcess":
        self.proc = start_module("consumer", self.env, self.log_path, lambda: self.http("/readyz")[0] == 200,
                                 "worker", wait_ready)
        return self

    def http(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of a metric's samples matching labels, read from the live /metrics endpoint."""
        code, text = self.http("/metrics")
        assert code == 200, "metrics endpoint down"
        return metric_sum(text, name, labels)

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return log_tail(self.log_path, n)


@dataclass
class Topics:
    """Unique topic and group names per test, so tests never see each other's events."""

    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        return {"IMAGEGATE_TOPIC_IN": f"{self.prefix}.in", "IMAGEGATE_TOPIC_OUT": f"{self.prefix}.out",
                "IMAGEGATE_TOPIC_DLQ": f"{self.prefix}.dlq", "IMAGEGATE_GROUP_ID": f"{self.prefix}.workers"}


class Collector:
    """Reads image_scored and DLQ topics from the beginning and keeps everything seen."""

    def __init__(self, settings):
        from producer_tools.kafka_clients import reader

        self.settings = settings
        self.scored: list[dict[str, Any]] = []
        self.dlq: list[tuple[bytes, dict[str, bytes]]] = []
        self.dlq_keys: list[bytes | None] = []  # the key of each record in `dlq`, same order
        self.headers: list[dict[str, bytes]] = []
        self._c = reader(settings)
        self._c.subscribe([settings.topic_out, settings.topic_dlq])

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._c.consume(500, 0.2):
                if msg.error():
                    continue
                headers = dict(msg.headers() or [])
                if msg.topic() == self.settings.topic_out:
                    self.scored.append(json.loads(msg.value()))
                    self.headers.append(headers)
                else:
                    self.dlq.append((msg.value(), headers))
                    self.dlq_keys.append(msg.key())

    def source_ids(self) -> set[str]:
        ids = {b["source_event_id"] for b in self.scored}
        for value, _ in self.dlq:
            try:
                ids.add(json.loads(value)["event_id"])
            except (ValueError, KeyError, TypeError):
                pass
        return ids

    def wait_for(self, event_ids: set[str], timeout: float, alive=lambda: True) -> set[str]:
        """Poll until every id has an outcome; returns the ids still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.5)
            missing = event_ids - self.source_ids()
            if not missing or not alive():
                return missing
        return event_ids - self.source_ids()

    def close(self) -> None:
        self._c.close()


def read_all(settings, topic: str) -> list:
    """Every record in the topic now, read by partition up to its end offset (no group, no idle guess)."""
    from confluent_kafka import TopicPartition

    from producer_tools.kafka_clients import reader

    c = reader(settings)
    parts = sorted(c.list_topics(topic, timeout=30).topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts}
    todo = {p for p, (low, high) in ends.items() if high > low}
    c.assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
    out = []
    for _ in range(600):
        if not todo:
            break
        for m in c.consume(1000, 0.5):
            if m.error():
                continue
            out.append(m)
            if m.offset() >= ends[m.partition()][1] - 1:
                todo.discard(m.partition())
    c.close()
    assert not todo, f"partitions {todo} of {topic} not read to their end"
    return out


class BreakableDevice:
    """A real model whose `predict` fails like a GPU that lost its context (every batch, while
    `broken` is set): our trouble, which must never become a seller's reject or a DLQ record."""

    def __init__(self, real):
        self._real = real
        self.broken = True

    def __getattr__(self, name):
        return getattr(self._real, name)

    def predict(self, batch):
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._real.predict(batch)


def json_refs(node):
    """Every `$ref` value in a JSON/YAML document (OpenAPI, AsyncAPI, JSON Schema), depth first."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for v in node.values():
            yield from json_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from json_refs(v)
