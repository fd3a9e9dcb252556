"""Dynamic micro-batching, with the knobs named as in Triton's dynamic batcher.

A batch is released when it reaches `max_batch_size` or when `max_batch_delay_ms` has
passed since its *first* item arrived, whichever comes first: under load batches fill
up (throughput), when idle a lone image waits at most the delay (latency).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, max_batch_size: int, max_batch_delay_ms: float, capacity: int):
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        # Bounded: producers block when inference falls behind, which stalls fetch
        # threads, which grows in-flight work, which pauses Kafka partitions.
        self._q: queue.Queue[T] = queue.Queue(maxsize=capacity)

    def put(self, item: T, stop: threading.Event) -> bool:
        """Block until there is room; False if stopping."""
        while not stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def offer(self, item: T) -> bool:
        """Add without waiting; False when full (for optional work that must never hold its caller up)."""
        try:
            self._q.put_nowait(item)
            return True
        except queue.Full:
            return False

    def qsize(self) -> int:
        return self._q.qsize()

    def next_batch(self, stop: threading.Event, idle_timeout_s: float = 0.1) -> list[T]:
        """Wait for a first item (returns [] after idle_timeout_s), then fill until size or delay."""
        try:
            first = self._q.get(timeout=idle_timeout_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_batch_delay_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait())
            except queue.Empty:
                break
        return batch
