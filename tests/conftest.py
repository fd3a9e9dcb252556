"""Shared fixtures: the real broker and Redis started by deploy/local/stack (lazily, once per session),
a random-weights plumbing model, generated images and a local origin, per-test topics."""

from __future__ import annotations

import os

import pytest
import redis

from tests.harness import Collector, Stack, Topics, WorkerProcess, free_port
from tests.images import encode, photo, variants
from tests.origin import Origin


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real Kafka + Redis for the session, in its own stack dir; stopped at the end."""
    s = Stack(tmp_path_factory.mktemp("pipeline-stack"))
    s.run("install", timeout=900)
    s.run("start")
    yield s
    s.run("stop", check=False)


@pytest.fixture(scope="session")
def plumbing_model(tmp_path_factory):
    """A tiny model with RANDOM weights: for plumbing tests only, its scores mean nothing."""
    from model.testing import write_random_model

    return write_random_model(tmp_path_factory.mktemp("model") / "random-plumbing.pt", input_size=64)


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "origin"
    root.mkdir()
    for seed in range(3):
        for name, data in variants(seed).items():
            (root / f"s{seed}-{name}").write_bytes(data)
    return root


@pytest.fixture
def small_origin(tmp_path):
    """An origin for fetch tests: a.jpg (tiny photo) and big.bin (300 kB of random bytes)."""
    root = tmp_path / "small-origin"
    root.mkdir()
    (root / "a.jpg").write_bytes(encode(photo(64, 48)))
    (root / "big.bin").write_bytes(os.urandom(300_000))
    o = Origin(root)
    yield o
    o.close()


@pytest.fixture
def origin(images):
    o = Origin(images)
    yield o
    o.close()


@pytest.fixture
def pipeline(stack, plumbing_model, tmp_path, request):
    """Environment for one worker group on fresh topics; Redis flushed so cache state is the test's own.

    Topics get 4 partitions; `@pytest.mark.parametrize("pipeline", [6], indirect=True)` asks for another count."""
    from consumer.config import load_settings
    from producer_tools.kafka_clients import ensure_topics

    env = dict(os.environ)
    env.update(stack.env_vars())
    env.update(Topics().env)
    env.update({
        "IMAGEGATE_MODEL_PATH": str(plumbing_model),
        "IMAGEGATE_DEVICE": "cpu",
        "IMAGEGATE_INFERENCE_THREADS": "1",
        "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "IMAGEGATE_FETCH_RETRIES": "2",
        "IMAGEGATE_FETCH_BACKOFF_MS": "20",
        "IMAGEGATE_FETCH_TIMEOUT_S": "5",
        "IMAGEGATE_METRICS_HOST": "127.0.0.1",
        "IMAGEGATE_TOPIC_PARTITIONS": str(getattr(request, "param", 4)),
        "IMAGEGATE_LOG_LEVEL": "INFO",
    })
    redis.Redis.from_url(env["IMAGEGATE_REDIS_URL"]).flushdb()
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    ensure_topics(settings)
    return Pipeline(env, settings, tmp_path)


class Pipeline:
    def __init__(self, env, settings, tmp_path):
        self.env = env
        self.settings = settings
        self.tmp = tmp_path
        self.workers: list[WorkerProcess] = []
        self.collectors: list[Collector] = []
        self._n = 0

    def worker(self, **extra_env: str) -> WorkerProcess:
        self._n += 1
        env = {**self.env, "IMAGEGATE_METRICS_PORT": str(free_port()), **extra_env}
        w = WorkerProcess(env, self.tmp / f"worker-{self._n}.log")
        self.workers.append(w)
        return w

    def collector(self) -> Collector:
        c = Collector(self.settings)
        self.collectors.append(c)
        return c

    def publish(self, events) -> int:
        from producer_tools.kafka_clients import producer
        from producer_tools.publish import publish

        return publish(producer(self.settings), self.settings.topic_in, events)

    def publish_raw(self, values: list[bytes | None], key: bytes = b"raw") -> None:
        from producer_tools.kafka_clients import producer

        p = producer(self.settings)
        for v in values:
            p.produce(self.settings.topic_in, v, key)
        assert p.flush(30) == 0


@pytest.fixture(autouse=True)
def _stop_workers(request):
    yield
    pipe = request.node.funcargs.get("pipeline")
    if pipe is not None:
        for w in pipe.workers:
            if w.alive():
                w.kill()
        for c in pipe.collectors:
            c.close()
