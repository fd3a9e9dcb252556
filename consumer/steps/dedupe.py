"""Single-flight: identical bytes in flight are decoded and scored once.

The first item with a given hash leads; later ones park here and are served the leader's
content (`ShareWithFollowers`, after the model). If the leader fails, its followers start
over from the beginning (one of them leads, or the cache now has the answer).
"""

from __future__ import annotations

import threading
from typing import Callable

from consumer.steps.base import HANDED_OFF, NEXT, Flow
from consumer.work import WorkItem


class SingleFlight:
    name = "single_flight"
    produces_content = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[WorkItem]] = {}

    def __call__(self, item: WorkItem) -> Flow:
        assert item.sha256 is not None
        with self._lock:
            followers = self._waiting.get(item.sha256)
            if followers is not None:
                followers.append(item)
                item.data = None
                return HANDED_OFF
            self._waiting[item.sha256] = []
        item.leader = True
        return NEXT

    def release(self, item: WorkItem) -> list[WorkItem]:
        """The leader is done (or failed): its parked followers, now ours to continue."""
        if not item.leader or item.sha256 is None:
            return []
        item.leader = False
        with self._lock:
            return self._waiting.pop(item.sha256, [])


class ShareWithFollowers:
    """Serve the leader's content to the identical images that waited for it."""

    name = "share"
    produces_content = False

    def __init__(self, flight: SingleFlight, continue_at_judge: Callable[[WorkItem], None]):
        self.flight = flight
        self.continue_at_judge = continue_at_judge

    def __call__(self, item: WorkItem) -> Flow:
        for f in self.flight.release(item):
            f.content, f.cached = item.content, True
            self.continue_at_judge(f)
        return NEXT
