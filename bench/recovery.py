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

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import distinct_jpegs  # noqa: E402
from bench.stack import Stack, free_port, running, settings_for, start_worker, worker_env  # noqa: E402

SETTINGS = {
    "default (KIP-848)": {},
    "classic + static membership": {"IMAGEGATE_GROUP_PROTOCOL": "classic", "IMAGEGATE_GROUP_INSTANCE_ID": "bench-0"},
}


def wait_output(settings, event_id: str, timeout: float) -> bool:
    """True once `image_scored` holds the output of `event_id` (read from the topic's start)."""
    from producer_tools.kafka_clients import reader

    c = reader(settings)
    c.subscribe([settings.topic_out])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in c.consume(100, 0.5):
                if not msg.error() and json.loads(msg.value())["source_event_id"] == event_id:
                    return True
        return False
    finally:
        c.close()


def measure(stack: Stack, model: Path, image_url: str, extra: dict[str, str], tmp: Path) -> tuple[float, float]:
    from producer_tools.kafka_clients import ensure_topics, producer
    from producer_tools.publish import make_event, publish

    env = worker_env(stack, IMAGEGATE_MODEL_PATH=str(model), **extra)
    settings = settings_for(env)
    ensure_topics(settings)
    w = start_worker({**env, "IMAGEGATE_METRICS_PORT": str(free_port())}, tmp / "w1.log")
    w.kill()
    w.wait(10)
    t_kill = time.monotonic()
    w2 = start_worker({**env, "IMAGEGATE_METRICS_PORT": str(free_port())}, tmp / "w2.log")  # ready = partitions assigned
    assigned = time.monotonic() - t_kill
    ev = make_event(image_url)
    publish(producer(settings), settings.topic_in, [ev])
    if not wait_output(settings, ev.event_id, 120):
        raise RuntimeError(f"no output for {ev.event_id} in 120 s; see {tmp / 'w2.log'}")
    first = time.monotonic() - t_kill
    w2.terminate()
    w2.wait(60)
    return assigned, first


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from model.testing import write_random_model
    from producer_tools import serve

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "img").mkdir()
        image = distinct_jpegs(tmp / "img", 1, (320, 240))[0]
        model = write_random_model(tmp / "plumbing.pt", input_size=64)
        origin = serve.start(tmp / "img")
        try:
            with running(Stack(tmp / "stack"), install=True) as stack:
                print(f"{'group setting':<30} {'partitions back':>16} {'first output':>13}")
                for name, extra in SETTINGS.items():
                    assigned, first = measure(stack, model, f"{serve.base_url(origin)}/{image.name}", extra, tmp)
                    print(f"{name:<30} {assigned:>15.1f}s {first:>12.1f}s")
        finally:
            origin.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
