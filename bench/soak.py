"""Soak: the worker at half its measured capacity for a long while; does its memory stay flat?

1. Starts the local stack if it is not running, an HTTP origin on loopback serving a pool of
   distinct generated JPEGs, and one worker subprocess (`python -m consumer`).
2. Calibration: publishes `--calibrate` distinct images at once and measures the worker's
   steady throughput (its capacity on this machine, with this model). `--rate` skips it.
3. Soak: publishes at half that capacity for `--minutes`: most events are new images (fetch,
   decode, inference), `--repeat` of them re-send an earlier image with content_sha256 (cache).
4. Samples the worker's VmRSS from /proc/<pid>/status every `--sample-s` seconds.

Prints RSS at soak start / end / peak, growth and the slope over the second half (a leak shows
as a steady positive slope), events in / out / missing, and the worker's DLQ count. Never
pass/fail: it is a bench script, not a test.

  .venv/bin/python bench/soak.py --minutes 10 [--model PATH] [--device cpu] [--rate 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STACK = REPO / "deploy" / "local" / "stack"

from bench.common import distinct_jpegs, rss_mb  # noqa: E402 (needs REPO on sys.path)


def make_pool(root: Path, n: int, size=(480, 360)) -> list[tuple[str, str]]:
    """n distinct JPEGs -> [(name, sha256)]."""
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in distinct_jpegs(root, n, size, prefix="p", seed=1)]


class Reader(threading.Thread):
    """Collects outputs (scored + DLQ) by source event id, with arrival times."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        from producer_tools.kafka_clients import reader

        self.settings = settings
        self.c = reader(settings)
        self.c.subscribe([settings.topic_out, settings.topic_dlq])
        self.seen: dict[str, float] = {}
        self.dlq = 0
        self.dups = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.stop.is_set():
            for msg in self.c.consume(500, 0.3):
                if msg.error():
                    continue
                try:
                    eid = json.loads(msg.value())["source_event_id" if msg.topic() == self.settings.topic_out else "event_id"]
                except (ValueError, KeyError, TypeError):
                    continue
                with self.lock:
                    if msg.topic() == self.settings.topic_dlq:
                        self.dlq += 1
                    if eid in self.seen:
                        self.dups += 1
                    else:
                        self.seen[eid] = time.monotonic()
        self.c.close()

    def count(self, ids) -> int:
        with self.lock:
            return sum(1 for i in ids if i in self.seen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, help="events/s for the soak (default: half the calibrated capacity)")
    ap.add_argument("--calibrate", type=int, default=150, help="distinct images for the capacity measurement")
    ap.add_argument("--repeat", type=float, default=0.3, help="fraction of soak events that repeat an image (cache)")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--model", help="weights file (default: the shipped weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    from consumer.config import load_settings
    from producer_tools import kafka_clients, serve
    from producer_tools.publish import make_event, publish

    started = subprocess.run([str(STACK), "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([str(STACK), "start"], check=True)
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in subprocess.run([str(STACK), "env"], capture_output=True, text=True,
                                                             check=True).stdout.split())
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    env.update({"IMAGEGATE_TOPIC_IN": f"{prefix}.in", "IMAGEGATE_TOPIC_OUT": f"{prefix}.out",
                "IMAGEGATE_TOPIC_DLQ": f"{prefix}.dlq", "IMAGEGATE_GROUP_ID": f"{prefix}.g",
                "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_METRICS_PORT": "0",
                "IMAGEGATE_LOG_LEVEL": "WARNING", "IMAGEGATE_DEVICE": args.device,
                "IMAGEGATE_MAX_BATCH_SIZE": str(args.batch)})
    if args.model:
        env["IMAGEGATE_MODEL_PATH"] = args.model
    os.environ.update(env)
    settings = load_settings()
    kafka_clients.ensure_topics(settings)
    worker = None
    tmp = tempfile.TemporaryDirectory()
    try:
        root = Path(tmp.name)
        # Pool big enough that soak events are new images (cap keeps generation time bounded).
        guess_rate = args.rate or 20.0
        n_pool = int(min(6000, args.calibrate + guess_rate * args.minutes * 60 * (1 - args.repeat) + 50))
        t0 = time.monotonic()
        pool = make_pool(root, n_pool)
        print(f"generated {n_pool} distinct images in {time.monotonic() - t0:.0f}s", flush=True)
        server = serve.start(root)
        base = serve.base_url(server)
        prod = kafka_clients.producer(settings)
        reader = Reader(settings)
        reader.start()
        log = open(root / "worker.log", "ab")
        worker = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stdout=log, stderr=log)

        # -- calibration ---------------------------------------------------------------
        calib = [make_event(f"{base}/{n}", image_id=f"cal-{i}") for i, (n, _) in enumerate(pool[: args.calibrate])]
        publish(prod, settings.topic_in, calib)
        ids = [e.event_id for e in calib]
        while reader.count(ids) < len(ids) and worker.poll() is None:
            time.sleep(0.5)
        if worker.poll() is not None:
            print("worker exited during calibration:\n" + (root / "worker.log").read_text()[-3000:])
            return 1
        arr = sorted(reader.seen[i] for i in ids)
        k = min(20, len(arr) // 4)
        capacity = (len(arr) - k) / (arr[-1] - arr[k])
        rate = args.rate or capacity / 2
        print(f"capacity (steady, {len(arr) - k} distinct images): {capacity:.1f} events/s; soak rate {rate:.1f}/s "
              f"for {args.minutes:g} min", flush=True)

        # -- soak ------------------------------------------------------------------------
        rng = np.random.default_rng(2)
        next_new = args.calibrate
        sent: list[str] = []
        samples: list[tuple[float, float]] = []
        t_start = time.monotonic()
        end = t_start + args.minutes * 60
        rss_start = rss_mb(worker.pid)
        next_sample = t_start
        i = 0
        while time.monotonic() < end and worker.poll() is None:
            due = int((time.monotonic() - t_start) * rate) - i
            batch = []
            for _ in range(max(0, due)):
                if rng.random() < args.repeat or next_new >= len(pool):
                    name, sha = pool[int(rng.integers(0, next_new))]
                    ev = make_event(f"{base}/{name}", image_id=f"soak-{i}", content_sha256=sha)
                else:
                    name, _ = pool[next_new]
                    next_new += 1
                    ev = make_event(f"{base}/{name}", image_id=f"soak-{i}")
                batch.append(ev)
                i += 1
            if batch:
                publish(prod, settings.topic_in, batch)
                sent += [e.event_id for e in batch]
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - t_start, rss_mb(worker.pid)))
                next_sample += args.sample_s
            time.sleep(0.1)
        # Drain: wait for the last events (bounded).
        drain_deadline = time.monotonic() + 120
        while reader.count(sent) < len(sent) and time.monotonic() < drain_deadline and worker.poll() is None:
            time.sleep(0.5)
        rss_end = rss_mb(worker.pid) if worker.poll() is None else float("nan")
        samples.append((time.monotonic() - t_start, rss_end))
        done = reader.count(sent)
        half = [(t, r) for t, r in samples if t >= samples[-1][0] / 2]
        slope = float(np.polyfit([t for t, _ in half], [r for _, r in half], 1)[0] * 60) if len(half) >= 3 else float("nan")
        print(f"\n{'measure':<36} value")
        print(f"{'soak duration':<36} {args.minutes:g} min at {rate:.1f} events/s (capacity {capacity:.1f}/s)")
        print(f"{'events in / out / missing':<36} {len(sent)} / {done} / {len(sent) - done}")
        print(f"{'DLQ records / duplicate outputs':<36} {reader.dlq} / {reader.dups}")
        print(f"{'distinct new images in soak':<36} {next_new - args.calibrate}")
        print(f"{'worker RSS at soak start':<36} {rss_start:.0f} MB")
        print(f"{'worker RSS at end':<36} {rss_end:.0f} MB (growth {rss_end - rss_start:+.0f} MB)")
        print(f"{'worker RSS peak':<36} {max(r for _, r in samples):.0f} MB")
        print(f"{'RSS slope, second half':<36} {slope:+.2f} MB/min")
        print(f"{'RSS samples (min: MB)':<36} " + ", ".join(f"{t / 60:.1f}:{r:.0f}" for t, r in samples[:: max(1, len(samples) // 12)]))
        reader.stop.set()
        server.shutdown()
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(60)
        tmp.cleanup()
        if started:
            subprocess.run([str(STACK), "stop"])


if __name__ == "__main__":
    sys.exit(main())
