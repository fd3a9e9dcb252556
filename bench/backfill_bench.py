"""Backfill across a model-version change, on the local stack, with the real worker and CLI.

  1. a worker running model version A scores N distinct images (HTTP origin on loopback):
     Redis then holds N `imagegate:image:*` results of version A;
  2. `imagegate backfill --from-redis --model B.pt` selects every result not scored by B and
     publishes it (trigger "backfill"): its own summary gives the publish throughput;
  3. a worker running version B consumes the backfill: re-score throughput, end to end;
  4. the version mix in Redis before and after.

Both models are the random plumbing model (`model.testing.write_random_model`) written with two
version strings: their scores mean nothing, the point is the operator path and its throughput.
The worker records each result's `source_url` in Redis, which is what `--from-redis` re-publishes;
the bench counts records without it (should be 0). Prints figures; never pass/fail.

  .venv/bin/python bench/backfill_bench.py [--images 1000] [--rate 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import distinct_jpegs  # noqa: E402 (needs REPO on sys.path)
from bench.stack import running, settings_for, worker_env  # noqa: E402


def versioned_model(path: Path, version: str) -> Path:
    import torch

    from model.testing import write_random_model

    write_random_model(path, input_size=64)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["metadata"]["version"] = version
    torch.save(blob, path)
    return path


def version_mix(r) -> Counter:
    mix: Counter = Counter()
    keys = list(r.scan_iter(match="imagegate:image:*", count=1000))
    for i in range(0, len(keys), 500):
        for raw in r.mget(keys[i:i + 500]):
            if raw is not None:
                body = json.loads(raw)
                mix[f"model {body['model']['version']} / policy {body['policy']['version']}"] += 1
    return mix


def run_worker(env: dict[str, str], settings, model_path: Path, image_ids: set[str], version: str) -> dict[str, float]:
    """Start a worker on `model_path`, wait until every image has an output of `version`."""
    from producer_tools import kafka_clients

    reader = kafka_clients.reader(settings)
    reader.subscribe([settings.topic_out])
    t0 = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-m", "consumer"], env={**env, "IMAGEGATE_MODEL_PATH": str(model_path)},
                              cwd=REPO, stderr=subprocess.DEVNULL)
    arrivals, wanted = [], set(image_ids)
    try:
        while wanted and time.monotonic() - t0 < 1800 and worker.poll() is None:
            for msg in reader.consume(1000, 0.5):
                if msg.error():
                    continue
                body = json.loads(msg.value())
                if body["model"]["version"] == version and body["image_id"] in wanted:
                    wanted.discard(body["image_id"])
                    arrivals.append(time.monotonic())
    finally:
        worker.terminate()
        worker.wait(60)
        reader.close()
    k = min(10, len(arrivals) - 1)
    steady = (len(arrivals) - k) / (arrivals[-1] - arrivals[k]) if len(arrivals) > k + 1 else float("nan")
    return {"done": len(arrivals), "missing": len(wanted), "wall_s": (arrivals[-1] - t0) if arrivals else float("nan"),
            "steady_rate": steady}


def backfill(env: dict[str, str], v2: Path, checkpoint: Path, rate: float) -> tuple[dict, float]:
    """`imagegate backfill --from-redis --model v2`: its JSON summary and the command's wall time."""
    cmd = [sys.executable, "-m", "producer_tools.cli", "backfill", "--from-redis", "--model", str(v2),
           "--checkpoint", str(checkpoint)] + (["--rate", str(rate)] if rate else [])
    t0 = time.monotonic()
    bf = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if bf.returncode != 0:
        raise RuntimeError(f"backfill failed (rc {bf.returncode}):\n{bf.stderr}")
    return json.loads(bf.stdout.strip().splitlines()[-1]), time.monotonic() - t0


def measure(args, env: dict[str, str], tmp: Path) -> dict:
    """Steps 1-4 of the module docstring, on the topics and Redis of `env`."""
    import redis

    from producer_tools import kafka_clients, serve
    from producer_tools.publish import make_event, publish

    settings = settings_for(env)
    kafka_clients.ensure_topics(settings)
    r = redis.Redis.from_url(settings.redis_url)
    r.flushdb()
    root = tmp / "images"
    root.mkdir()
    paths = distinct_jpegs(root, args.images, args.wh)
    v1 = versioned_model(tmp / "v1.pt", "1.0.0-bench")
    v2 = versioned_model(tmp / "v2.pt", "2.0.0-bench")
    server = serve.start(root)
    try:
        urls = {p.stem: f"{serve.base_url(server)}/{p.name}" for p in paths}
        publish(kafka_clients.producer(settings), settings.topic_in, [make_event(u, image_id=i) for i, u in urls.items()])
        out = {"first": run_worker(env, settings, v1, set(urls), "1.0.0-bench")}
        out["missing_url"] = sum("source_url" not in json.loads(r.get(f"imagegate:image:{i}")) for i in urls)
        out["before"] = version_mix(r)
        out["summary"], out["bf_wall"] = backfill(env, v2, tmp / "backfill.json", args.rate)
        out["second"] = run_worker(env, settings, v2, set(urls), "2.0.0-bench")
        out["after"] = version_mix(r)
    finally:
        server.shutdown()
    return out


def report(args, m: dict) -> None:
    first, second, summary = m["first"], m["second"], m["summary"]
    w, h = args.wh
    print(f"\n{args.images} distinct {w}x{h} JPEGs, random plumbing model 64 px on CPU, {os.cpu_count()} CPUs")
    print(f"catalogue scored by model 1.0.0-bench: {first['done']} images, {first['steady_rate']:.1f}/s steady "
          f"({m['missing_url']} Redis records without source_url)")
    print(f"version mix before: {dict(m['before'])}")
    print(f"backfill --from-redis: planned {summary['total']}, published {summary['published']} in "
          f"{summary['seconds']:.2f}s = {summary['events_per_s']:.0f} events/s "
          f"(whole command incl. Redis selection and model read: {m['bf_wall']:.1f}s); skipped {summary['skipped']}")
    print(f"re-score by model 2.0.0-bench: {second['done']} done, {second['missing']} missing, "
          f"{second['steady_rate']:.1f}/s steady, {second['wall_s']:.1f}s incl. worker start")
    print(f"version mix after: {dict(m['after'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", default="320x240", help="WxH of generated images")
    ap.add_argument("--rate", type=float, default=0, help="backfill --rate (0: unlimited)")
    args = ap.parse_args()
    args.wh = tuple(int(v) for v in args.size.split("x"))
    with running() as stack, tempfile.TemporaryDirectory() as tmp:
        env = worker_env(stack, f"bf{uuid.uuid4().hex[:6]}", IMAGEGATE_METRICS_PORT="0",
                         IMAGEGATE_LOG_LEVEL="WARNING", IMAGEGATE_TOPIC_PARTITIONS="4")
        env.pop("IMAGEGATE_TOPIC_BACKFILL", None)
        try:
            m = measure(args, env, Path(tmp))
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
    report(args, m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
