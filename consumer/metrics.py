"""Prometheus metrics (the one piece of process-global state) and the ops HTTP server.

Names follow Prometheus conventions: `imagegate_` prefix, base units (seconds, bytes),
`_total` counters, labels with a handful of fixed values only (never an image, event or
seller id). docs/operations.md has the table; deploy/grafana and deploy/prometheus query
exactly these names (tests/observability checks that).

One port serves `/metrics`, `/healthz` and `/readyz` (what they check: consumer/health.py).
"""

from __future__ import annotations

import json
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.events import Decision, ReasonCode

disable_created_metrics()  # no `*_created` series: they double the series count and nothing here queries them

# Buckets per stage, from the fastest plausible value to the stage's own timeout.
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # network; fetch_timeout_s 10 s
DECODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # CPU; 80 MP worst case ~2 s
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORE_BUCKETS = tuple(float(b) for b in range(5, 101, 5))  # scores are 0..100

# Label values are closed sets; every one is created at start-up so rate() and the
# dashboards see a 0 series before the first increment.
DLQ_STAGES = ("validate", "consume", "fetch", "decode", "fetch_decode", "inference", "emit")
RETRY_STAGES = ("fetch", "decode", "fetch_decode", "inference", "produce")
CACHE_RESULTS = {"get": ("hit", "miss", "error", "skipped"), "put": ("ok", "error", "skipped")}
OUTCOMES = ("ok", "error")

EVENTS_CONSUMED = Counter("imagegate_events_consumed_total", "Messages read from the input topic")
EVENTS_INVALID = Counter("imagegate_events_invalid_total", "Messages that failed contract validation (they go to the DLQ)")
EVENTS_SCORED = Counter("imagegate_events_scored_total", "image_scored events acknowledged by the broker", ["cached"])
EVENTS_DLQ = Counter("imagegate_events_dlq_total", "DLQ records acknowledged by the broker, by failing stage", ["stage"])
DLQ_TRUNCATED = Counter("imagegate_dlq_truncated_total", "DLQ records whose original value the broker refused, sent truncated")
DECISIONS = Counter("imagegate_decisions_total", "Decisions in acknowledged image_scored events", ["decision"])
REASONS = Counter("imagegate_reasons_total", "Reason codes in acknowledged image_scored events", ["code"])
CACHE = Counter("imagegate_cache_requests_total", "Redis cache operations by result", ["op", "result"])
RETRIES = Counter("imagegate_retries_total", "Retries by stage (quick in-fetch retries and delayed retries)", ["stage"])
DROPPED_STALE = Counter("imagegate_stale_work_dropped_total",
                        "Work dropped because its partition was revoked (the next owner processes it again)")
PRODUCE_ERRORS = Counter("imagegate_produce_errors_total", "Failed deliveries to Kafka (each is produced again)")
IMAGES_INFERRED = Counter("imagegate_images_inferred_total", "Images that went through the model (cache hits do not)")

FETCH_SECONDS = Histogram("imagegate_fetch_duration_seconds", "Image download time incl. retries", ["outcome"],
                          buckets=FETCH_BUCKETS)
DECODE_SECONDS = Histogram("imagegate_decode_duration_seconds", "Decode + measure + preprocess time per image", ["outcome"],
                           buckets=DECODE_BUCKETS)
STEPS = ("claimed_lookup", "fetch", "content_lookup", "single_flight", "decode", "infer", "share", "judge", "emit")
STEP_SECONDS = Histogram("imagegate_step_duration_seconds", "Time in each pipeline step on the calling thread",
                         ["step", "outcome"], buckets=FETCH_BUCKETS)
QUEUE_SECONDS = Histogram("imagegate_queue_duration_seconds", "Wait between decode and the start of the model batch",
                          buckets=QUEUE_BUCKETS)
INFERENCE_SECONDS = Histogram("imagegate_inference_duration_seconds", "Model forward time per batch", buckets=INFERENCE_BUCKETS)
E2E_SECONDS = Histogram("imagegate_end_to_end_duration_seconds", "From consume to broker acknowledgement of the output",
                        buckets=E2E_BUCKETS)
BATCH_SIZE = Histogram("imagegate_batch_size", "Images per model batch", buckets=BATCH_BUCKETS)
SCORE = Histogram("imagegate_score", "Distribution of emitted scores, 0..100 (for drift)", buckets=SCORE_BUCKETS)

IN_FLIGHT = Gauge("imagegate_in_flight_events", "Events consumed and not yet acknowledged")
AWAITING_ACK = Gauge("imagegate_awaiting_ack_events",
                     "Results handed to the producer, not yet acknowledged by the broker (part of in-flight)")
MAX_IN_FLIGHT = Gauge("imagegate_max_in_flight_events", "Configured in-flight bound; at it, consumption pauses")
INFERENCE_QUEUE = Gauge("imagegate_inference_queue_items", "Decoded images waiting for the model")
PAUSED = Gauge("imagegate_consumer_paused", "1 while consumption is paused for backpressure, else 0")
LAG = Gauge("imagegate_consumer_lag_messages", "High watermark minus committed offset (librdkafka statistics)",
            ["topic", "partition"])
ASSIGNED = Gauge("imagegate_assigned_partitions", "Partitions assigned to this worker")
REDIS_UP = Gauge("imagegate_redis_up", "1 when the last Redis operation succeeded, 0 after a failure")
OLDEST_IN_FLIGHT = Gauge("imagegate_oldest_in_flight_seconds",
                         "Age of the oldest event in flight that is not waiting for a delayed retry")
DELAYED = Gauge("imagegate_delayed_events", "Events parked for a delayed retry of a transient failure")
LAST_PROGRESS = Gauge("imagegate_last_progress_timestamp_seconds", "Unix time the poll loop last ran")
MODEL_INFO = Info("imagegate_model", "Model and policy in use")

for _c in ("true", "false"):
    EVENTS_SCORED.labels(_c)
for _d in Decision:
    DECISIONS.labels(_d.value)
for _r in ReasonCode:
    REASONS.labels(_r.value)
for _s in DLQ_STAGES:
    EVENTS_DLQ.labels(_s)
for _s in RETRY_STAGES:
    RETRIES.labels(_s)
for _op, _results in CACHE_RESULTS.items():
    for _res in _results:
        CACHE.labels(_op, _res)
for _o in OUTCOMES:
    FETCH_SECONDS.labels(_o)
    DECODE_SECONDS.labels(_o)
    for _step in STEPS:
        STEP_SECONDS.labels(_step, _o)

_STAGE_HISTOGRAMS = {"fetch": FETCH_SECONDS, "decode": DECODE_SECONDS}


def observe_step(step: str, seconds: float, ok: bool) -> None:
    """Called by the chain around every step (the one place steps are timed)."""
    outcome = "ok" if ok else "error"
    STEP_SECONDS.labels(step, outcome).observe(seconds)
    stage = _STAGE_HISTOGRAMS.get(step)
    if stage is not None:
        stage.labels(outcome).observe(seconds)


GPU_METRICS = {
    "imagegate_gpu_memory_allocated_bytes": "GPU memory held by tensors (torch.cuda.memory_allocated)",
    "imagegate_gpu_memory_reserved_bytes": "GPU memory reserved by torch's caching allocator (torch.cuda.memory_reserved)",
}


class _GpuMemory(Collector):
    """torch's CUDA caching-allocator numbers, read at scrape time."""

    def __init__(self, device: Any):
        self.device = device

    def describe(self):
        return [GaugeMetricFamily(n, h, labels=["device"]) for n, h in GPU_METRICS.items()]

    def collect(self):
        import torch

        label = str(self.device)
        read = {"imagegate_gpu_memory_allocated_bytes": torch.cuda.memory_allocated,
                "imagegate_gpu_memory_reserved_bytes": torch.cuda.memory_reserved}
        out = []
        for fam in self.describe():
            fam.add_metric([label], float(read[fam.name](self.device)))
            out.append(fam)
        return out


_gpu_lock = threading.Lock()
_gpu_collector: _GpuMemory | None = None


def watch_gpu(device: Any) -> bool:
    """Export GPU memory gauges when the model runs on CUDA (once per process); True if it does."""
    global _gpu_collector
    if not str(getattr(device, "type", device)).startswith("cuda"):
        return False
    with _gpu_lock:
        if _gpu_collector is None:
            _gpu_collector = _GpuMemory(device)
            REGISTRY.register(_gpu_collector)
    return True


class Probes(Protocol):
    """What `/healthz` and `/readyz` ask (consumer/health.py answers); metrics imports no health code."""

    def live(self) -> tuple[bool, dict]: ...

    def ready(self) -> tuple[bool, dict]: ...


def serve(health: Probes, host: str, port: int) -> ThreadingHTTPServer:
    """Start the ops server on a daemon thread; returns it (server.server_port has the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, detail = (health.live if path == "/healthz" else health.ready)()
                self._send(200 if ok else 503, json.dumps({"ok": ok, **detail}).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server


# -- Shadow models (consumer/shadow.py): the candidate's cost and its agreement with the default ------------
SHADOW_OUTCOMES = ("scored", "dropped", "skipped", "error")
SHADOW_REASON_OUTCOMES = ("both", "default_only", "candidate_only")
SHADOW_EVENTS = Counter("imagegate_shadow_events_total",
                        "Shadow samples by outcome: scored by the candidate, dropped (shadow queue full), skipped "
                        "(no input for the candidate model, e.g. a cache hit it has not seen), error", ["outcome"])
SHADOW_INFERENCE_SECONDS = Histogram("imagegate_shadow_inference_duration_seconds",
                                     "Candidate model forward time per shadow batch", buckets=INFERENCE_BUCKETS)
SHADOW_BATCH_SIZE = Histogram("imagegate_shadow_batch_size", "Images per candidate-model batch", buckets=BATCH_BUCKETS)
SHADOW_QUEUE = Gauge("imagegate_shadow_queue_items", "Shadow samples waiting for the shadow thread")
SHADOW_PUBLISH_ERRORS = Counter("imagegate_shadow_publish_errors_total",
                                "Shadow records the shadow topic did not take (never retried: shadow data is best effort)")
SHADOW_DECISIONS = Counter("imagegate_shadow_decisions_total", "Shadowed images by default and candidate decision",
                           ["default", "candidate"])
SHADOW_REASON_AGREEMENT = Counter("imagegate_shadow_reason_agreement_total",
                                  "Reason codes of shadowed images: in both verdicts, the default's only, the candidate's only",
                                  ["code", "outcome"])
for _o in SHADOW_OUTCOMES:
    SHADOW_EVENTS.labels(_o)
for _d in Decision:
    for _c in Decision:
        SHADOW_DECISIONS.labels(_d.value, _c.value)
for _r in ReasonCode:
    for _o in SHADOW_REASON_OUTCOMES:
        SHADOW_REASON_AGREEMENT.labels(_r.value, _o)
