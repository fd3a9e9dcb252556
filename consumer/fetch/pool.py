"""Idle HTTPS connections kept for reuse, so a second image from one origin skips the TCP and
TLS handshakes.

Kept per (URL host, checked address, port): a connection is only ever handed out for the
address that the SSRF check has just passed again for this hop (the lookup and the check run
on every hop, pooled or not), and for the host name its certificate was verified against.
Bounded: at most `max_idle` connections in all, each idle at most `idle_s`; the oldest go
first. A connection that the peer closed while idle is dropped when taken.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from urllib3.connection import HTTPConnection

Key = tuple[str, str, int]  # (host, checked address, port)


class ConnectionPool:
    def __init__(self, max_idle: int = 32, idle_s: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self.max_idle = max_idle
        self.idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[tuple[Key, float, HTTPConnection]] = []  # oldest first

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def take(self, key: Key) -> HTTPConnection | None:
        """The most recently used live connection for `key`, or None."""
        now = self._clock()
        found, dead = None, []
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):
                k, since, conn = self._idle[i]
                if k != key:
                    continue
                del self._idle[i]
                if now - since <= self.idle_s and conn.is_connected:  # is_connected: no EOF waiting on the socket
                    found = conn
                    break
                dead.append(conn)
        for conn in dead:
            conn.close()
        return found

    def put(self, key: Key, conn: HTTPConnection) -> None:
        evicted = []
        with self._lock:
            self._idle.append((key, self._clock(), conn))
            while len(self._idle) > self.max_idle:
                evicted.append(self._idle.pop(0)[2])
        for old in evicted:
            old.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, _, conn in idle:
            conn.close()
