"""Whose problem is it? Failures sorted once, and the delayed-retry path for our own.

| failure                                                      | whose  | outcome                               |
|--------------------------------------------------------------|--------|---------------------------------------|
| 404/410/other 4xx, not an image, corrupt, too large/small,   | seller | `reject` with a reason code (steps    |
| refused by the SSRF policy, malformed host name, a host that |        | record it; it is not an error here)   |
| does not exist (confirmed), a special-use host name          |        |                                       |
| resolver trouble (SERVFAIL, EAI_FAIL, no answer), connection | ours   | `Transient`: retried after            |
| refused/reset, timeout, 5xx, 429, TLS trouble, decode budget |        | `IMAGEGATE_RETRY_DELAYS_S` (minutes), |
| busy, a model/device error that fails every image of a batch |        | then DLQ with the reason; never a     |
|                                                              |        | seller-facing verdict                 |

DNS outcomes in detail: consumer/fetch/dns.py.
| anything unexpected (a bug, one poison input)                | ours   | `IMAGEGATE_PROCESSING_RETRIES` quick  |
|                                                              |        | retries, then DLQ                     |

A delayed event keeps its offset uncommitted (at-least-once), but it is parked: it does
not count toward `IMAGEGATE_MAX_IN_FLIGHT`, so the partition keeps flowing. At most
`IMAGEGATE_MAX_DELAYED` events wait; beyond that a new one goes to the DLQ at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from typing import Callable

from consumer import metrics
from consumer.work import WorkItem

log = logging.getLogger("imagegate.retry")


class Transient(Exception):
    """Our own, transient trouble: retry later, never blame the seller."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


class DelayQueue:
    """One thread that hands parked items back when their delay is over."""

    def __init__(self, capacity: int, resubmit: Callable[[WorkItem], None], heartbeat: Callable[[], None]):
        self.capacity = capacity
        self._resubmit = resubmit
        self._beat = heartbeat
        self._heap: list[tuple[float, int, WorkItem]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="retry", daemon=True)

    def __len__(self) -> int:
        with self._cv:
            return len(self._heap)

    def put(self, item: WorkItem, delay_s: float) -> bool:
        """False when full (the caller dead-letters instead)."""
        with self._cv:
            if len(self._heap) >= self.capacity:
                return False
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), item))
            metrics.DELAYED.set(len(self._heap))
            self._cv.notify()
        return True

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            due: list[WorkItem] = []
            with self._cv:
                if self._stop:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                wait = min(1.0, self._heap[0][0] - now) if self._heap and not due else 1.0
                metrics.DELAYED.set(len(self._heap))
                if not due:
                    self._cv.wait(wait)
            self._beat()
            for item in due:
                self._resubmit(item)


def jittered(delay_s: float) -> float:
    """Spread retries of many events that failed together on one origin (±20 %)."""
    return delay_s * random.uniform(0.8, 1.2)
