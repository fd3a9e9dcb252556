"""``make bench``: every throughput, latency and memory figure of the issue, from one run.

Writes ``bench/results/latest.json`` and a dated copy, and prints them as a table.
Never pass/fail: this machine is shared and noisy, so what matters are the ratios
measured side by side in the same run.

Parts (all against the real local stack: Kafka + Redis from deploy/local/stack, an HTTP
image origin on loopback, and the worker as a subprocess, ``python -m consumer``,
configured only by IMAGEGATE_* variables, so the bench does not depend on the worker's
internals):

1. model-only images/s per runtime at the configured batch (bench/model_bench.py);
2. decode-only images/s (one thread, the pipeline's images) and decode ms per image for
   0.3/1/4/12 MP JPEGs, before/after (bench/decode_bench.py);
3. pipeline_events_per_s: N distinct images published up front, steady output rate;
4. latency p50/p99 at 25/50/90 % of that rate, open-loop Poisson arrivals of new images
   (latency = publish -> scored event read back, so time queued in Kafka counts);
5. cache_hit_events_per_s: already-scored content re-sent with its sha256 (no fetch, no model);
6. naive_events_per_s, in this process: consume one, fetch, decode, predict a batch of 1,
   produce and flush, commit synchronously, repeat;
7. peak_rss_mb: the worker's peak resident memory over parts 3-5;
8. the scoring API (bench/api_bench.py, no Kafka): requests/s and p50/p99 for single ~1 MP photos
   at 1, 4 and 16 concurrent clients, and 64 clients against a concurrency limit of 16: how many
   requests were answered 429 with Retry-After.

  .venv/bin/python bench/run.py [--images 96] [--batch 32] [--seconds 30] [--api-seconds 15] [--no-api]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STACK = REPO / "deploy" / "local" / "stack"
RESULTS = REPO / "bench" / "results"

from bench import api_bench, decode_bench, model_bench  # noqa: E402
from bench.common import distinct_copies, distinct_jpegs, rss_mb  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@dataclass
class Outputs:
    """Reads image_scored in a thread; remembers when each source event's result arrived."""

    reader: object
    arrived: dict[str, float] = field(default_factory=dict)
    bodies: dict[str, dict] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.reader.consume(1000, 0.2):
                if msg.error():
                    continue
                body = json.loads(msg.value())
                sid = body["source_event_id"]
                self.arrived.setdefault(sid, time.monotonic())
                self.bodies[sid] = body

    def wait_for(self, ids: set[str], timeout_s: float, worker: subprocess.Popen, rss: list[float]) -> None:
        start = time.monotonic()
        end = start + timeout_s
        while time.monotonic() < end and worker.poll() is None and not ids <= self.arrived.keys():
            if time.monotonic() - start > 180 and not ids & self.arrived.keys():
                break  # nothing at all in 3 minutes: the worker is failing these events (see its log)
            rss.append(rss_mb(worker.pid))
            time.sleep(0.1)
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}")


def steady_rate(times: list[float], skip: int = 5) -> float:
    """Outputs per second between the skip-th and the last arrival (excludes start-up and warm-up)."""
    t = sorted(times)
    if len(t) <= skip + 2:
        return float("nan")
    return (len(t) - 1 - skip) / (t[-1] - t[skip])


def naive_loop(settings, topic: str, n: int, predictor) -> float:
    """One event at a time, nothing overlapped: the baseline for speedup_vs_naive."""
    import urllib.request

    from confluent_kafka import Consumer, Producer

    from consumer.decode import DecodeLimits, decode
    from consumer.events import parse_uploaded

    c = Consumer({**settings.kafka_common(), "group.id": f"naive-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    p = Producer({**settings.kafka_common(), "acks": "all", "enable.idempotence": True})
    c.subscribe([topic])
    limits, done, t0 = DecodeLimits(), 0, None
    while done < n:
        msg = c.poll(1.0)
        if msg is None or msg.error():
            continue
        t0 = t0 or time.monotonic()
        ev = parse_uploaded(msg.value())
        data = urllib.request.urlopen(ev.url, timeout=10).read()
        d = decode(data, predictor.preprocess, predictor.input_size, limits,
                   full_resolution=predictor.needs_full_resolution)
        out = predictor.predict(d.tensor[None])
        p.produce(f"{topic}-out", json.dumps({"image_id": ev.image_id, "quality": float(out["quality"][0])}))
        p.flush(10)
        c.commit(msg, asynchronous=False)
        done += 1
    c.close()
    return n / (time.monotonic() - t0)


def run_stack_parts(args, runtime: str, predictor, root: Path, env: dict[str, str]) -> dict:
    from consumer.config import load_settings
    from producer_tools import kafka_clients, serve
    from producer_tools.publish import make_event, publish, sha256_file

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    env = {**env, "IMAGEGATE_TOPIC_IN": f"{prefix}.in", "IMAGEGATE_TOPIC_OUT": f"{prefix}.out",
           "IMAGEGATE_TOPIC_DLQ": f"{prefix}.dlq", "IMAGEGATE_GROUP_ID": f"{prefix}.g",
           "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_METRICS_PORT": "0",
           "IMAGEGATE_LOG_LEVEL": "WARNING", "IMAGEGATE_LOG_EVENTS": "false", "IMAGEGATE_RUNTIME": runtime,
           "IMAGEGATE_TRUST_CLAIMED_SHA256": "true"}
    if args.batch:
        env["IMAGEGATE_MAX_BATCH_SIZE"] = str(args.batch)
    os.environ.update(env)
    settings = load_settings()
    kafka_clients.ensure_topics(settings)
    server = serve.start(root)
    base = serve.base_url(server)
    size = tuple(int(v) for v in args.size.split("x"))
    sat_paths = distinct_copies(root, args.images, size, prefix="s", run=prefix)
    prod = kafka_clients.producer(settings)
    reader = kafka_clients.reader(settings)
    reader.subscribe([settings.topic_out])
    outs = Outputs(reader)
    th = threading.Thread(target=outs.run, daemon=True)
    th.start()
    rss: list[float] = []
    res: dict = {}
    sent_at: dict[str, float] = {}
    log_path = root / "worker.log"
    log_file = open(log_path, "wb")
    worker = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stderr=log_file)
    try:
        # 3. saturation: a backlog of distinct images
        events = [make_event(f"{base}/{p.name}", image_id=p.stem) for p in sat_paths]
        publish(prod, settings.topic_in, events)
        ids = {e.event_id for e in events}
        outs.wait_for(ids, 600, worker, rss)
        got = [outs.arrived[i] for i in ids if i in outs.arrived]
        res["pipeline_events_per_s"] = round(steady_rate(got), 2)
        res["pipeline_events_done"] = len(got)
        if len(got) < len(ids) // 2:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the worker scored {len(got)} of {len(ids)} events; its log ends:\n{tail}")
        res["pipeline_scored_by_model"] = sum(1 for i in ids if i in outs.bodies and not outs.bodies[i]["cached"]
                                              and outs.bodies[i]["decision"] in ("accept", "demote", "reject")
                                              and "quality" in outs.bodies[i]["signals"])
        sat = res["pipeline_events_per_s"]
        # 4. open loop at fractions of saturation: Poisson arrivals of new, distinct images
        rng = np.random.default_rng(7)
        lat: dict[str, dict[str, float]] = {}
        for k, frac in enumerate((0.25, 0.5, 0.9)):
            rate = frac * sat
            n = max(8, int(rate * args.seconds))
            paths = distinct_copies(root, n, size, prefix=f"o{k}", seed=100 + k, run=prefix)
            evs = [make_event(f"{base}/{p.name}", image_id=p.stem) for p in paths]
            t_next = time.monotonic()
            for e in evs:
                t_next += rng.exponential(1.0 / rate)
                while time.monotonic() < t_next:
                    rss.append(rss_mb(worker.pid))
                    time.sleep(min(0.05, max(0.0, t_next - time.monotonic())))
                publish(prod, settings.topic_in, [e])
                sent_at[e.event_id] = time.monotonic()
            want = {e.event_id for e in evs}
            outs.wait_for(want, 180, worker, rss)
            ms = [(outs.arrived[i] - sent_at[i]) * 1000 for i in want if i in outs.arrived]
            sent = sorted(sent_at[e.event_id] for e in evs)
            achieved = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else float("nan")
            lat[f"{int(frac * 100)}pct"] = {"offered_events_per_s": round(rate, 2), "sent_events_per_s": round(achieved, 2),
                                            "events": len(ms),
                                            "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}
        res["latency"] = lat
        res["p99_ms_at_50pct"] = lat["50pct"]["p99_ms"]
        # 5. cache hits: content already scored, re-sent with its claimed sha256 (no fetch, no model)
        digests = [(p, sha256_file(p)) for p in sat_paths]
        hits = [make_event(f"{base}/{p.name}", image_id=f"hit{i}", content_sha256=h)
                for i in range(args.cache_events // len(digests) + 1) for p, h in digests][: args.cache_events]
        publish(prod, settings.topic_in, hits)
        hit_ids = {e.event_id for e in hits}
        outs.wait_for(hit_ids, 120, worker, rss)
        got = [outs.arrived[i] for i in hit_ids if i in outs.arrived]
        res["cache_hit_events_per_s"] = round(steady_rate(got, skip=min(50, len(got) // 10)), 1)
        res["cache_hit_events_done"] = len(got)
        res["cache_hit_served_from_cache"] = sum(1 for i in hit_ids if outs.bodies.get(i, {}).get("cached"))
        res["peak_rss_mb"] = round(max(rss), 1) if rss else float("nan")
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log_file.close()
        outs.stop.set()
        th.join(5)
        reader.close()
    # 6. naive, in this process (same runtime as the worker), on its own topic of distinct images
    naive_topic = f"{prefix}.naive"
    kafka_clients.ensure_topics(settings.model_copy(update={"topic_in": naive_topic, "topic_out": f"{naive_topic}-out",
                                                          "topic_dlq": f"{naive_topic}.dlq"}), partitions=1)
    paths = distinct_copies(root, args.naive_events, size, prefix="n", seed=55, run=prefix)
    publish(prod, naive_topic, [make_event(f"{base}/{p.name}", image_id=p.stem) for p in paths])
    prod.flush(10)
    del prod
    res["naive_events_per_s"] = round(naive_loop(settings, naive_topic, args.naive_events, predictor), 2)
    server.shutdown()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96, help="distinct images for the saturation run")
    ap.add_argument("--batch", type=int, default=None, help="model batch (default: the worker's IMAGEGATE_MAX_BATCH_SIZE)")
    ap.add_argument("--size", default="1152x864", help="WxH of the pipeline's JPEGs (1 MP)")
    ap.add_argument("--seconds", type=float, default=30, help="open-loop duration per load level")
    ap.add_argument("--cache-events", type=int, default=3000)
    ap.add_argument("--naive-events", type=int, default=12)
    ap.add_argument("--runtimes", default="torch,onnxruntime,openvino",
                    help="model-only comparison (the int8 ones need the datasets for calibration; see bench/README.md)")
    ap.add_argument("--runtime", default=None, help="the worker's runtime (default: the CPU default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-stack", action="store_true", help="model and decode parts only")
    ap.add_argument("--api-seconds", type=float, default=15, help="per client level of the scoring API part")
    ap.add_argument("--no-api", action="store_true", help="skip the scoring API part")
    ap.add_argument("--results-name", default="latest", help="bench/results/<name>.json (gpu.sh: gpu)")
    args = ap.parse_args()

    import model
    from consumer.config import load_settings
    from model import runtimes

    batch = args.batch or load_settings().max_batch_size
    dev = runtimes.resolve_device(args.device)
    runtime = args.runtime or runtimes.default_runtime(dev)
    out: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}",
                 "cpu_count": os.cpu_count(), "device": dev, "runtime": runtime, "batch": batch,
                 "load_avg_at_start": os.getloadavg()[0]}
    print(f"[1/4] model-only, batch {batch}", flush=True)
    wanted = [r for r in args.runtimes.split(",") if r]
    rates = model_bench.measure(wanted, batch, rounds=2, device=dev)
    out["model_images_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    if "torch" in rates and runtime in rates:
        out["default_vs_torch_eager"] = round(rates[runtime] / rates["torch"], 2)
    predictor = model.load(None, dev, runtime=runtime)
    out["model"] = {"name": predictor.name, "version": predictor.version, "input_size": predictor.input_size}
    print("[2/4] decode", flush=True)
    out["decode_ms_per_image"] = decode_bench.measure(predictor.input_size, images=6, rounds=3)
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        from consumer.decode import DecodeLimits, decode

        datas = [p.read_bytes() for p in distinct_jpegs(Path(tmp), 24, size, prefix="d")]
        t0 = time.perf_counter()
        arrs = [decode(d, predictor.preprocess, predictor.input_size, DecodeLimits(),
                       full_resolution=predictor.needs_full_resolution).tensor for d in datas]
        out["decode_images_per_s"] = round(len(arrs) / (time.perf_counter() - t0), 1)
    if not args.no_stack:
        print("[3/4] pipeline against the local stack", flush=True)
        started = subprocess.run([str(STACK), "status"], capture_output=True).returncode != 0
        if started:
            subprocess.run([str(STACK), "start"], check=True)
        env = dict(os.environ)
        env.update(line.split("=", 1) for line in
                   subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=True).stdout.split())
        env["IMAGEGATE_DEVICE"] = dev
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out.update(run_stack_parts(args, runtime, predictor, Path(tmp), env))
        finally:
            if started:
                subprocess.run([str(STACK), "stop"])
        slowest = min(out["model_images_per_s"].get(runtime, float("inf")), out["decode_images_per_s"])
        out["slowest_stage_per_s"] = round(slowest, 2)
        out["pipeline_efficiency"] = round(out["pipeline_events_per_s"] / slowest, 2)
        # On a small CPU machine decode and the model share the same cores, so the pipeline's real
        # ceiling is the CPU time both need per image, not the slower stage measured alone.
        n = os.cpu_count() or 1
        model_rate = out["model_images_per_s"].get(runtime)
        if model_rate and dev == "cpu":
            bound = n / (n / model_rate + 1 / out["decode_images_per_s"])
            out["shared_core_bound_per_s"] = round(bound, 2)
            out["pipeline_efficiency_vs_shared_core_bound"] = round(out["pipeline_events_per_s"] / bound, 2)
            # The naive loop already runs its model on every core (the runtime's intra-op threads), so
            # overlapping stages can win at most the bound over it: the ceiling of speedup_vs_naive here.
            out["speedup_ceiling_vs_naive"] = round(bound / out["naive_events_per_s"], 2)
        out["speedup_vs_naive"] = round(out["pipeline_events_per_s"] / out["naive_events_per_s"], 2)
        out["events_per_s_per_core"] = round(out["pipeline_events_per_s"] / (os.cpu_count() or 1), 2)
    if not args.no_api and dev == "cpu":
        print("[4/4] scoring API", flush=True)
        out["api"] = api_bench.measure(seconds=args.api_seconds, log=lambda line: print("  " + line, flush=True))
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = RESULTS / f"{args.results_name}-parts.json"  # written by bench/gpu_bench.py earlier in gpu.sh
    if parts.exists():
        out["gpu"] = json.loads(parts.read_text())
    text = json.dumps(out, indent=1)
    (RESULTS / f"{args.results_name}.json").write_text(text + "\n")
    (RESULTS / f"{args.results_name}-{out['date'][:19].replace(':', '')}.json").write_text(text + "\n")
    print_table(out)
    return 0


def print_table(out: dict) -> None:
    print(f"\n{out['machine']}; model {out['model']['name']} {out['model']['version']} "
          f"{out['model']['input_size']} px on {out['device']}; worker runtime {out['runtime']}, batch {out['batch']}")
    rows = [(f"model-only images/s, {k}", v) for k, v in out["model_images_per_s"].items()]
    rows += [("worker runtime / torch eager (same run)", out.get("default_vs_torch_eager")),
             ("decode-only images/s (1 thread)", out["decode_images_per_s"])]
    for size, d in out["decode_ms_per_image"].items():
        rows.append((f"decode ms/image {size}: full+f32 / draft+f32 / draft+u8",
                     " / ".join(f"{v:.1f}" for v in d.values())))
    for k in ("pipeline_events_per_s", "slowest_stage_per_s", "pipeline_efficiency", "shared_core_bound_per_s",
              "pipeline_efficiency_vs_shared_core_bound", "naive_events_per_s",
              "speedup_vs_naive", "speedup_ceiling_vs_naive", "cache_hit_events_per_s", "p99_ms_at_50pct", "peak_rss_mb",
              "events_per_s_per_core"):
        if k in out:
            rows.append((k, out[k]))
    for lvl, v in out.get("latency", {}).items():
        rows.append((f"latency at {lvl} ({v['offered_events_per_s']}/s, n={v['events']}) p50 / p99 ms",
                     f"{v['p50_ms']:.0f} / {v['p99_ms']:.0f}"))
    api = out.get("api")
    if api:
        for lv in api["levels"]:
            rows.append((f"API {lv['clients']} client(s): requests/s, p50 / p99 ms",
                         f"{lv['requests_per_s']}, {lv['p50_ms']:.0f} / {lv['p99_ms']:.0f}"))
        ov = api.get("overload")
        if ov:
            rows.append((f"API overload, {ov['clients']} clients vs limit {ov['concurrency_limit']}: 429 (with Retry-After) "
                         "of requests", f"{ov['throttled_429']} ({ov['throttled_429_with_retry_after']}) of "
                         f"{ov['requests_total']}"))
            rows.append(("API overload: accepted requests/s, p50 / p99 ms; 429 p99 ms",
                         f"{ov['requests_per_s']}, {ov['p50_ms']:.0f} / {ov['p99_ms']:.0f}; {ov['p99_429_ms']}"))
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    sys.exit(main())
