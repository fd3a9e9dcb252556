"""Liveness and readiness: what `/healthz` and `/readyz` answer.

Liveness means "this process still makes progress", so an orchestrator restarts a
wedged worker instead of leaving it: every long-lived thread registers and heartbeats
(each of their waits is bounded, so a live thread beats at least every few seconds);
`/healthz` fails when a registered thread died or stopped beating for `stall_after_s`,
when the oldest event in flight (not parked for a retry) is older than
`in_flight_max_age_s`, when the model failed every image of several batches in a row
(a sticky device error needs a new process), or after a fatal error (a permanent
produce failure on the output topic). Readiness: model loaded, broker reachable,
partitions assigned, nothing fatal.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from consumer import metrics

DEVICE_FAILURES_UNHEALTHY = 3  # whole batches failed in a row -> restart the process


class Health:
    def __init__(self, stall_after_s: float, in_flight_max_age_s: float = float("inf")):
        self.stall_after_s = stall_after_s
        self.in_flight_max_age_s = in_flight_max_age_s
        self.model_loaded = False
        self.broker_ok = False
        self.assigned = 0
        self.fatal: str | None = None
        self.device_failures = 0  # consecutive batches where every image failed
        self.oldest_in_flight: Callable[[], float] = lambda: 0.0
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {"poll": time.monotonic()}
        self._threads: dict[str, threading.Thread] = {}

    def register(self, name: str, thread: threading.Thread, heartbeat: bool = True) -> None:
        """`heartbeat=False` for threads whose work may rightly block long (a fetch up to its deadline):
        only their death is checked; events stuck on them show in the in-flight age."""
        with self._lock:
            self._threads[name] = thread
            if heartbeat:
                self._beats[name] = time.monotonic()

    def beat(self, name: str = "poll") -> None:
        self._beats[name] = time.monotonic()
        if name == "poll":
            metrics.LAST_PROGRESS.set(time.time())

    def set_fatal(self, why: str) -> None:
        if self.fatal is None:
            self.fatal = why

    def live(self) -> tuple[bool, dict]:
        now = time.monotonic()
        problems: list[str] = []
        with self._lock:
            beats = dict(self._beats)
            threads = dict(self._threads)
        for name, at in beats.items():
            if now - at > self.stall_after_s:
                problems.append(f"{name} thread made no progress for {now - at:.0f}s")
        for name, t in threads.items():
            if t.ident is not None and not t.is_alive():  # started, then gone
                problems.append(f"{name} thread died")
        oldest = self.oldest_in_flight()
        metrics.OLDEST_IN_FLIGHT.set(oldest)
        if oldest > self.in_flight_max_age_s:
            problems.append(f"an event has been in flight for {oldest:.0f}s (bound {self.in_flight_max_age_s:g}s)")
        if self.device_failures >= DEVICE_FAILURES_UNHEALTHY:
            problems.append(f"the model failed every image of {self.device_failures} batches in a row")
        if self.fatal:
            problems.append(f"fatal: {self.fatal}")
        detail = {"last_progress_s_ago": round(now - beats["poll"], 3), "oldest_in_flight_s": round(oldest, 3),
                  "problems": problems}
        return not problems, detail

    def ready(self) -> tuple[bool, dict]:
        detail = {"model_loaded": self.model_loaded, "broker_reachable": self.broker_ok, "assigned_partitions": self.assigned}
        if self.fatal:
            detail["fatal"] = self.fatal
        return self.model_loaded and self.broker_ok and self.assigned > 0 and not self.fatal, detail
