"""Per-partition tracking of out-of-order completion.

Events finish out of order (a slow fetch, a cache hit, a batch), but Kafka commits one
offset per partition meaning "everything before this is done". So we store only the
highest *contiguous* completed offset (+1), as librdkafka (`enable.auto.offset.store=false`
+ `store_offsets`) and the Confluent Parallel Consumer recommend. An offset is "done"
only when its `image_scored` or DLQ record was acknowledged by the broker.
"""

from __future__ import annotations

import threading
from collections import deque


class _Partition:
    __slots__ = ("order", "done", "next_commit", "stored")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # offsets started, ascending
        self.done: set[int] = set()  # completed but not yet contiguous
        self.next_commit: int | None = None  # offset to commit (first not-done)
        self.stored: int | None = None  # last value handed to store_offsets


class OffsetTracker:
    """Thread-safe: `start` from the poll loop, `complete` from delivery callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[tuple[str, int], _Partition] = {}

    def assign(self, topic: str, partition: int) -> None:
        with self._lock:
            self._parts.setdefault((topic, partition), _Partition())

    def forget(self, topic: str, partition: int) -> None:
        """Partition revoked or lost: late completions for it are ignored from now on."""
        with self._lock:
            self._parts.pop((topic, partition), None)

    def start(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            p = self._parts.setdefault((topic, partition), _Partition())
            if p.order and offset <= p.order[-1]:
                return  # re-delivered after a seek: already tracked
            p.order.append(offset)

    def complete(self, topic: str, partition: int, offset: int) -> bool:
        """Mark one offset done. Returns False if the partition is no longer ours."""
        with self._lock:
            p = self._parts.get((topic, partition))
            if p is None:
                return False
            p.done.add(offset)
            while p.order and p.order[0] in p.done:
                first = p.order.popleft()
                p.done.discard(first)
                p.next_commit = first + 1
            return True

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(p.order) for p in self._parts.values())

    def in_flight_for(self, keys: list[tuple[str, int]]) -> int:
        with self._lock:
            return sum(len(self._parts[k].order) for k in keys if k in self._parts)

    def to_store(self, keys: list[tuple[str, int]] | None = None) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) whose commit point advanced since the last call."""
        out = []
        with self._lock:
            for key, p in self._parts.items():
                if keys is not None and key not in keys:
                    continue
                if p.next_commit is not None and p.next_commit != p.stored:
                    p.stored = p.next_commit
                    out.append((key[0], key[1], p.next_commit))
        return out
