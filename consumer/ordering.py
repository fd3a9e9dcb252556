"""Results for one image leave in the order their events arrived (per partition).

Fetches finish in any order: a slow fetch of an old photo can complete after a cache hit
on its replacement. Like the Parallel Consumer's KEY ordering, every consumed message
takes a slot in its (partition, key) line; an outcome (an `image_scored` or a DLQ record)
waits until every earlier slot of its line has left, then goes to the sink. The sink
writes Redis and produces in that order, and the idempotent producer keeps it per
output partition. A partition that is revoked drops its lines (epoch-fenced).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from consumer.events import ImageScored
from consumer.work import Source, WorkItem

Line = tuple[str, int, bytes | None]


class Outcome:
    """What leaves for one consumed message: a scored event, or a DLQ record (scored is None)."""

    __slots__ = ("item", "scored", "dlq_stage", "dlq_error")

    def __init__(self, item: WorkItem, scored: ImageScored | None, dlq_stage: str = "", dlq_error: str = ""):
        self.item, self.scored, self.dlq_stage, self.dlq_error = item, scored, dlq_stage, dlq_error


class Emitter:
    """Thread-safe: slots are taken by the poll loop, outcomes arrive from any pipeline thread."""

    def __init__(self, send: Callable[[Outcome], None], is_current: Callable[[Source], bool]):
        self._send = send
        self._is_current = is_current
        self._lock = threading.Lock()
        self._lines: dict[Line, deque[int]] = {}
        self._ready: dict[tuple[str, int, int], Outcome] = {}

    def take_slot(self, src: Source) -> None:
        with self._lock:
            self._lines.setdefault((src.topic, src.partition, src.key), deque()).append(src.offset)

    def scored(self, item: WorkItem, scored: ImageScored) -> None:
        self._arrive(Outcome(item, scored))

    def dead_letter(self, item: WorkItem, stage: str, error: str) -> None:
        self._arrive(Outcome(item, None, stage, error))

    def forget_partition(self, topic: str, partition: int) -> None:
        with self._lock:
            for line in [k for k in self._lines if k[0] == topic and k[1] == partition]:
                del self._lines[line]
            for k in [k for k in self._ready if k[0] == topic and k[1] == partition]:
                del self._ready[k]

    def _arrive(self, out: Outcome) -> None:
        src = out.item.source
        if not self._is_current(src):
            return  # revoked since consumed: the next owner emits it
        line: Line = (src.topic, src.partition, src.key)
        leaving: list[Outcome] = []
        with self._lock:
            q = self._lines.get(line)
            if q is None or src.offset not in q:
                leaving.append(out)  # no slot (e.g. taken before a re-assignment): nothing to wait for
            else:
                self._ready[(src.topic, src.partition, src.offset)] = out
                while q and (src.topic, src.partition, q[0]) in self._ready:
                    leaving.append(self._ready.pop((src.topic, src.partition, q.popleft())))
                if not q:
                    del self._lines[line]
            for o in leaving:  # under the lock: two threads never interleave one line's outcomes
                self._send(o)

    def pending(self) -> int:
        with self._lock:
            return len(self._ready)
