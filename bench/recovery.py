"""Recovery after kill -9 of a worker, restarted at once, with production group settings.

Prints, per group setting, the seconds from the kill until the restarted worker (a) owns
partitions again and (b) emitted its first `image_scored`. Real broker and Redis (a local
stack of its own), the random-weights plumbing model (delivery only, not quality):

    .venv/bin/python bench/recovery.py

Settings measured: the default (KIP-848, broker session timeout 45 s: the dead member keeps
its partitions until the broker expires it) and classic + static membership (the restarted
worker, same instance id, replaces its old member at once).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import Collector, Stack, Topics, WorkerProcess, free_port  # noqa: E402

SETTINGS = {
    "default (KIP-848)": {},
    "classic + static membership": {"IMAGEGATE_GROUP_PROTOCOL": "classic", "IMAGEGATE_GROUP_INSTANCE_ID": "bench-0"},
}


def measure(stack: Stack, model: Path, origin_url: str, extra: dict[str, str], tmp: Path) -> tuple[float, float]:
    from consumer.config import load_settings
    from producer_tools.kafka_clients import ensure_topics, producer
    from producer_tools.publish import make_event, publish

    env = {**os.environ, **stack.env_vars(), **Topics().env, "IMAGEGATE_MODEL_PATH": str(model), "IMAGEGATE_DEVICE": "cpu",
           "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_METRICS_HOST": "127.0.0.1", **extra}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    ensure_topics(settings)
    w = WorkerProcess({**env, "IMAGEGATE_METRICS_PORT": str(free_port())}, tmp / "w1.log").start()
    w.proc.kill()
    w.proc.wait(10)
    t_kill = time.monotonic()
    w2 = WorkerProcess({**env, "IMAGEGATE_METRICS_PORT": str(free_port())}, tmp / "w2.log")
    w2.start(wait_ready=300)  # ready = partitions assigned
    assigned = time.monotonic() - t_kill
    out = Collector(settings)
    p = producer(settings)
    ev = make_event(f"{origin_url}/img/a.jpg")
    publish(p, settings.topic_in, [ev])
    assert out.wait_for({ev.event_id}, 120) == set(), w2.log_tail()
    first = time.monotonic() - t_kill
    out.close()
    w2.stop()
    return assigned, first


def main() -> int:
    from model.testing import write_random_model
    from tests.images import encode, photo
    from tests.origin import Origin

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        stack = Stack(tmp / "stack")
        stack.run("install", timeout=900)
        stack.run("start")
        (tmp / "img").mkdir()
        (tmp / "img" / "a.jpg").write_bytes(encode(photo(320, 240)))
        origin = Origin(tmp / "img")
        model = write_random_model(tmp / "plumbing.pt", input_size=64)
        try:
            print(f"{'group setting':<30} {'partitions back':>16} {'first output':>13}")
            for name, extra in SETTINGS.items():
                assigned, first = measure(stack, model, origin.url, extra, tmp)
                print(f"{name:<30} {assigned:>15.1f}s {first:>12.1f}s")
        finally:
            origin.close()
            stack.run("stop", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
