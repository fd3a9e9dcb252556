"""Per-partition tracking of out-of-order completion, fenced by assignment epochs.

Events finish out of order (a slow fetch, a cache hit, a batch), but Kafka commits one
offset per partition meaning "everything before this is done". So we store only the
highest *contiguous* completed offset (+1), as librdkafka (`enable.auto.offset.store=false`
+ `store_offsets`) and the Confluent Parallel Consumer recommend. An offset is "done"
only when its `image_scored` or DLQ record was acknowledged by the broker.

Every assignment of a partition gets a new epoch. Work carries the epoch it was consumed
under; a completion from an earlier epoch (the partition was revoked, maybe re-assigned
since) is ignored, so it can never move the commit point of the newer assignment.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

TP = tuple[str, int]


@dataclass
class PartitionState:
    epoch: int
    started: dict[int, float] = field(default_factory=dict)  # offset -> monotonic start, insertion = ascending
    done: set[int] = field(default_factory=set)  # completed but not yet contiguous
    waiting: set[int] = field(default_factory=set)  # parked for a delayed retry
    next_commit: int | None = None  # offset to commit (first not-done)
    stored: int | None = None  # last value handed to store_offsets


class OffsetTracker:
    """Thread-safe: `start` from the poll loop, `complete` from delivery callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[TP, PartitionState] = {}
        self._epochs = itertools.count(1)

    def assign(self, topic: str, partition: int) -> int:
        """A new assignment: a fresh state under a new epoch (returned)."""
        with self._lock:
            state = PartitionState(next(self._epochs))
            self._parts[(topic, partition)] = state
            return state.epoch

    def forget(self, topic: str, partition: int) -> None:
        """Partition revoked or lost: late completions for it are ignored from now on."""
        with self._lock:
            self._parts.pop((topic, partition), None)

    def epoch(self, topic: str, partition: int) -> int | None:
        with self._lock:
            p = self._parts.get((topic, partition))
            return p.epoch if p else None

    def is_current(self, topic: str, partition: int, epoch: int) -> bool:
        with self._lock:
            p = self._parts.get((topic, partition))
            return p is not None and p.epoch == epoch

    def start(self, topic: str, partition: int, offset: int, epoch: int) -> bool:
        """Track a consumed offset; False when it is not ours (stale epoch) or already tracked."""
        with self._lock:
            p = self._parts.get((topic, partition))
            if p is None or p.epoch != epoch:
                return False
            if offset in p.started or (p.next_commit is not None and offset < p.next_commit):
                return False  # re-delivered after a seek: already tracked or done
            p.started[offset] = time.monotonic()
            return True

    def complete(self, topic: str, partition: int, offset: int, epoch: int) -> bool:
        """Mark one offset done. Returns False if the partition is no longer ours under that epoch."""
        with self._lock:
            p = self._parts.get((topic, partition))
            if p is None or p.epoch != epoch or offset not in p.started:
                return False
            p.done.add(offset)
            p.waiting.discard(offset)
            while p.started:
                first = next(iter(p.started))
                if first not in p.done:
                    break
                del p.started[first]
                p.done.discard(first)
                p.next_commit = first + 1
            return True

    def set_waiting(self, topic: str, partition: int, offset: int, epoch: int, waiting: bool) -> None:
        """Parked for a delayed retry: not counted by the in-flight bound or the age check."""
        with self._lock:
            p = self._parts.get((topic, partition))
            if p is None or p.epoch != epoch:
                return
            (p.waiting.add if waiting else p.waiting.discard)(offset)

    def in_flight(self, topics: set[str] | None = None) -> int:
        """Events consumed, not done and not parked for a retry."""
        with self._lock:
            return sum(len(p.started) - len(p.done) - len(p.waiting) for (t, _), p in self._parts.items()
                       if topics is None or t in topics)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(p.waiting) for p in self._parts.values())

    def in_flight_for(self, keys: list[TP], include_waiting: bool = False) -> int:
        with self._lock:
            parts = [self._parts[k] for k in keys if k in self._parts]
            return sum(len(p.started) - len(p.done) - (0 if include_waiting else len(p.waiting)) for p in parts)

    def oldest_age_s(self) -> float:
        """Age of the oldest event in flight that is not parked for a retry (0 when none)."""
        now = time.monotonic()
        with self._lock:
            oldest = min((t for p in self._parts.values() for o, t in p.started.items()
                          if o not in p.done and o not in p.waiting), default=now)
        return now - oldest

    def to_store(self, keys: list[TP] | None = None) -> list[tuple[str, int, int]]:
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
