"""The API's own series, next to the worker's (consumer/metrics.py: steps, batch size,
inference time, cache) in the same registry, so one `/metrics` shows both.

Labels are closed sets: `route` is the route's path template (an unknown path is "other"),
`status` the HTTP status code.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram

ROUTES = ("/v1/score", "/healthz", "/readyz", "/metrics", "/openapi.yaml")
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUEST_SECONDS = Histogram("imagegate_api_request_duration_seconds", "HTTP request time, by route and status",
                            ["route", "status"], buckets=REQUEST_BUCKETS)
IN_FLIGHT = Gauge("imagegate_api_in_flight_requests",
                  "Scoring requests admitted whose work has not finished (each holds a concurrency slot)")
CONCURRENCY = Gauge("imagegate_api_concurrency_limit", "Configured concurrency slots (IMAGEGATE_API_CONCURRENCY)")
THROTTLED = Counter("imagegate_api_throttled_total", "Scoring requests answered 429: every concurrency slot was taken")
FAILED = Counter("imagegate_api_failures_total", "Scoring requests answered 5xx, by why", ["why"])
FAILURE_WHYS = ("origin_unavailable", "origin_timeout", "busy", "model_failed", "internal", "deadline_exceeded")
for _w in FAILURE_WHYS:
    FAILED.labels(_w)

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


class RequestMetrics:
    """ASGI middleware: time every HTTP request by its route template and status."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}  # what the client sees if the app raises before answering
        t0 = time.monotonic()

        async def send_timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            REQUEST_SECONDS.labels(route, str(status["code"])).observe(time.monotonic() - t0)
