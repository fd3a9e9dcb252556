"""Pipeline benchmark: does the worker run at the speed of its slowest stage?

Measures, in one run on the same machine:
  1. baselines, stage by stage, in this process: decode+preprocess (one thread) and model
     forward at `--batch` (the predictor alone, on pre-decoded tensors);
  2. the real pipeline: a worker subprocess consuming N distinct images from Kafka (real
     local broker + Redis, HTTP origin on loopback), end to end to acknowledged output.
Prints throughput, latency percentiles (from the events' own `timings.total_ms`), worker RSS,
and the ratio of pipeline throughput to the slowest stage's. Never pass/fail.

  .venv/bin/python bench/pipeline_bench.py [--images 300] [--batch 32] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STACK = REPO / "deploy" / "local" / "stack"

from bench.common import distinct_jpegs, rss_mb  # noqa: E402 (needs REPO on sys.path)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def baselines(paths: list[Path], predictor, batch: int) -> dict[str, float]:
    from consumer.decode import DecodeLimits, decode

    limits = DecodeLimits()
    datas = [p.read_bytes() for p in paths]
    t0 = time.perf_counter()
    tensors = [decode(d, predictor.preprocess, predictor.input_size, limits).tensor for d in datas]
    decode_rate = len(datas) / (time.perf_counter() - t0)
    x = torch.stack(tensors[:batch])
    predictor.predict(x)  # warm-up
    reps = max(1, min(10, 2 * len(tensors) // batch))
    t0 = time.perf_counter()
    for _ in range(reps):
        predictor.predict(x)
    model_rate = reps * batch / (time.perf_counter() - t0)
    return {"decode_per_thread": decode_rate, "model": model_rate}


def run_pipeline(paths: list[Path], root: Path, env: dict[str, str], batch: int) -> dict[str, float]:
    from consumer.config import load_settings
    from producer_tools import kafka_clients, serve
    from producer_tools.publish import make_event, publish

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    env = {**env, "IMAGEGATE_TOPIC_IN": f"{prefix}.in", "IMAGEGATE_TOPIC_OUT": f"{prefix}.out",
           "IMAGEGATE_TOPIC_DLQ": f"{prefix}.dlq", "IMAGEGATE_GROUP_ID": f"{prefix}.g",
           "IMAGEGATE_MAX_BATCH_SIZE": str(batch), "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]',
           "IMAGEGATE_METRICS_PORT": "0", "IMAGEGATE_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    settings = load_settings()
    kafka_clients.ensure_topics(settings)
    server = serve.start(root)
    events = [make_event(f"{serve.base_url(server)}/{p.name}", image_id=p.stem) for p in paths]
    publish(kafka_clients.producer(settings), settings.topic_in, events)
    reader = kafka_clients.reader(settings)
    reader.subscribe([settings.topic_out])
    t_start = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    arrivals, totals, peak_rss = [], [], 0.0
    wanted = {e.event_id for e in events}
    try:
        while wanted and time.monotonic() - t_start < 1800 and worker.poll() is None:
            for msg in reader.consume(500, 0.5):
                if msg.error():
                    continue
                body = json.loads(msg.value())
                if body["source_event_id"] in wanted:
                    wanted.discard(body["source_event_id"])
                    arrivals.append(time.monotonic())
                    totals.append(body["timings"]["total_ms"])
            peak_rss = max(peak_rss, rss_mb(worker.pid))
    finally:
        worker.terminate()
        worker.wait(60)
        reader.close()
        server.shutdown()
    # Steady state: from the 10th to the last output (excludes model load and warm-up).
    k = min(10, len(arrivals) - 1)
    steady = (len(arrivals) - k) / (arrivals[-1] - arrivals[k]) if len(arrivals) > k + 1 else float("nan")
    return {"done": len(arrivals), "wall_s": arrivals[-1] - t_start if arrivals else float("nan"),
            "steady_rate": steady, "p50_ms": pct(totals, 50), "p95_ms": pct(totals, 95), "p99_ms": pct(totals, 99),
            "peak_rss_mb": peak_rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", default="640x480", help="WxH of generated images")
    ap.add_argument("--model", help="weights file (default: shipped weights)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import model

    size = tuple(int(v) for v in args.size.split("x"))
    predictor = model.load(args.model, args.device)
    started = subprocess.run([str(STACK), "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([str(STACK), "start"], check=True)
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=True).stdout.split())
    if args.model:
        env["IMAGEGATE_MODEL_PATH"] = args.model
    env["IMAGEGATE_DEVICE"] = args.device
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = distinct_jpegs(root, args.images, size)
            base = baselines(paths[: min(len(paths), 128)], predictor, args.batch)
            pipe = run_pipeline(paths, root, env, args.batch)
    finally:
        if started:
            subprocess.run([str(STACK), "stop"])
    slowest = min(base.values())
    print(f"\nmodel {predictor.name} {predictor.version} on {predictor.device}, input {predictor.input_size}px, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, images {size[0]}x{size[1]} JPEG")
    print(f"{'measure':<40} {'value':>10}")
    print(f"{'baseline: decode+preprocess (1 thread)':<40} {base['decode_per_thread']:>8.1f}/s")
    print(f"{'baseline: model forward, batch ' + str(args.batch):<40} {base['model']:>8.1f}/s")
    print(f"{'pipeline: steady throughput':<40} {pipe['steady_rate']:>8.1f}/s")
    print(f"{'pipeline / slowest stage':<40} {pipe['steady_rate'] / slowest:>9.2f}x")
    print(f"{'pipeline: events done':<40} {pipe['done']:>10d}")
    print(f"{'pipeline: wall incl. worker start':<40} {pipe['wall_s']:>9.1f}s")
    print(f"{'end-to-end latency p50 / p95 / p99':<40} {pipe['p50_ms']:.0f} / {pipe['p95_ms']:.0f} / {pipe['p99_ms']:.0f} ms")
    print(f"{'worker peak RSS':<40} {pipe['peak_rss_mb']:>8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
