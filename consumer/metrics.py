"""Prometheus metrics (the one piece of process-global state) and the ops HTTP server.

Names follow Prometheus conventions: `imagegate_` prefix, base units (seconds, bytes),
`_total` counters, labels with a handful of values only (never an image or event id).
One port serves `/metrics`, `/healthz` (the loop made progress recently) and `/readyz`
(model loaded, broker reachable, partitions assigned).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info, generate_latest

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_NET = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_E2E = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

EVENTS_CONSUMED = Counter("imagegate_events_consumed_total", "Messages read from the input topic")
EVENTS_INVALID = Counter("imagegate_events_invalid_total", "Messages that failed contract validation")
EVENTS_SCORED = Counter("imagegate_events_scored_total", "image_scored events acknowledged by the broker", ["cached"])
EVENTS_DLQ = Counter("imagegate_events_dlq_total", "Events sent to the dead-letter topic", ["stage"])
DECISIONS = Counter("imagegate_decisions_total", "Decisions emitted", ["decision"])
REASONS = Counter("imagegate_reasons_total", "Reason codes emitted", ["code"])
CACHE = Counter("imagegate_cache_requests_total", "Cache lookups and writes by result", ["op", "result"])
RETRIES = Counter("imagegate_retries_total", "Retries by stage", ["stage"])
PRODUCE_ERRORS = Counter("imagegate_produce_errors_total", "Failed deliveries to Kafka (each is retried)")
STAGE_SECONDS = Histogram("imagegate_stage_duration_seconds", "Time per pipeline stage", ["stage"], buckets=_NET)
INFERENCE_SECONDS = Histogram("imagegate_inference_duration_seconds", "Model forward time per batch", buckets=_FAST + (2.5, 5.0, 10.0))
E2E_SECONDS = Histogram("imagegate_end_to_end_duration_seconds", "From consume to broker acknowledgement", buckets=_E2E)
IMAGES_INFERRED = Counter("imagegate_images_inferred_total", "Images that went through the model (cache hits do not)")
BATCH_SIZE = Histogram("imagegate_batch_size", "Images per model batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
SCORE = Histogram("imagegate_score", "Distribution of emitted scores (for drift)", buckets=tuple(range(10, 101, 10)))
IN_FLIGHT = Gauge("imagegate_in_flight_events", "Events consumed and not yet acknowledged")
PAUSED = Gauge("imagegate_partitions_paused", "1 while consumption is paused for backpressure")
LAG = Gauge("imagegate_consumer_lag_messages", "High watermark minus consumer position", ["topic", "partition"])
ASSIGNED = Gauge("imagegate_assigned_partitions", "Partitions assigned to this worker")
REDIS_UP = Gauge("imagegate_redis_up", "1 when the last Redis operation succeeded")
LAST_PROGRESS = Gauge("imagegate_last_progress_timestamp_seconds", "Unix time the poll loop last ran")
MODEL_INFO = Info("imagegate_model", "Model and policy in use")


class Health:
    """Shared liveness/readiness state, written by the worker, read by the HTTP server."""

    def __init__(self, stall_after_s: float):
        self.stall_after_s = stall_after_s
        self._beat = time.monotonic()
        self.model_loaded = False
        self.broker_ok = False
        self.assigned = 0

    def beat(self) -> None:
        self._beat = time.monotonic()
        LAST_PROGRESS.set(time.time())

    def live(self) -> tuple[bool, dict]:
        age = time.monotonic() - self._beat
        return age < self.stall_after_s, {"last_progress_s_ago": round(age, 3)}

    def ready(self) -> tuple[bool, dict]:
        detail = {"model_loaded": self.model_loaded, "broker_reachable": self.broker_ok, "assigned_partitions": self.assigned}
        return self.model_loaded and self.broker_ok and self.assigned > 0, detail


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
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


def timed(stage: str) -> Callable:
    return STAGE_SECONDS.labels(stage).time()
