"""Dynamic micro-batching, with the knobs named as in Triton's dynamic batcher.

A batch is released when it reaches `max_batch_size` or when `max_batch_delay_ms` has
passed since its *first* item arrived, whichever comes first.

With a delay of 0 (the worker's default) the batcher never waits for more: the consumer
calls `next_batch` only when its model is idle, so whatever is waiting leaves at once. A
lone image is scored as soon as it arrives (latency at low load) and under load the queue
grows while the model runs, so the next batch is full anyway (throughput at high load).
Holding an image back while the model is idle only pays off where a bigger batch costs
almost nothing more (a GPU); a delay > 0 is for that, and for callers that want Triton's
behaviour (the scoring API's tests, the shadow).
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

    def next_batch(self, stop: threading.Event, idle_timeout_s: float = 0.1, limit: int | None = None) -> list[T]:
        """Wait for a first item (returns [] after idle_timeout_s), then fill until size or delay.

        `limit` caps this batch below `max_batch_size` (the model's chunk: see steps/infer.py)."""
        try:
            first = self._q.get(timeout=idle_timeout_s)
        except queue.Empty:
            return []
        batch = [first]
        size = min(self.max_batch_size, limit) if limit else self.max_batch_size
        if self.max_batch_delay_s <= 0:  # dispatch what is waiting, never wait for more
            while len(batch) < size:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            return batch
        deadline = time.monotonic() + self.max_batch_delay_s
        while len(batch) < size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait())
            except queue.Empty:
                break
        return batch
