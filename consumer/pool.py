"""A fixed set of daemon threads that run the chain for submitted items, from a given step on.

Two pools: fetch threads (many: they mostly wait on the network) and decode threads (as many
as the cores: decode is CPU work, and more decodes at once than cores only steal the cores
the model's threads need, which is what made latency at half load seconds long).

Not `ThreadPoolExecutor`: its threads are joined at interpreter exit, so one fetch stuck
on a peer used to hold SIGTERM hostage. These are daemon threads, registered with the
health check (a dead one fails `/healthz`), and the queue is bounded by the in-flight bound.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from consumer.health import Health
from consumer.work import WorkItem

log = logging.getLogger("imagegate.pool")


class WorkerPool:
    def __init__(self, name: str, size: int, run: Callable[[WorkItem, int], None], health: Health,
                 halt: threading.Event, capacity: int = 0):
        # capacity 0: unbounded (the fetch pool: bounded by the in-flight bound). The decode pool is
        # bounded: items waiting for it hold their fetched bytes (up to 25 MiB each), so a full queue
        # holds the fetch threads back, and no more bytes wait than one per fetch thread, as before.
        self._q: queue.Queue[tuple[WorkItem, int]] = queue.Queue(maxsize=capacity)
        self._run = run
        self._halt = halt
        self.threads = [threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for t in self.threads:
            health.register(t.name, t, heartbeat=False)  # a fetch may rightly block for its whole deadline

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submit(self, item: WorkItem, start: int = 0) -> bool:
        """Run the chain for `item` from step index `start` on one of the pool's threads.

        Blocks while a bounded pool is full; False if the worker is stopping meanwhile."""
        while not self._halt.is_set():
            try:
                self._q.put((item, start), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def qsize(self) -> int:
        return self._q.qsize()

    def _serve(self) -> None:
        while not self._halt.is_set():
            try:
                item, start = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._run(item, start)
            except Exception:  # the chain handles step failures; this is a bug in the chain itself
                log.exception("pipeline thread error", extra=item.log_ids())
