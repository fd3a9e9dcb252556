"""A connection to a URL's host at an address that passed the SSRF check, ended by the deadline.

The host is resolved once per hop, every address is checked, and the socket goes to the
checked address (TLS still verifies the certificate against the URL's host name): no second
lookup that a rebinding attack could answer differently. At the deadline the socket is shut
down, so a read or write blocked on a peer that trickles (or says nothing) returns at once.

HTTPS connections whose response was read to its end are kept for reuse (consumer/fetch/pool.py),
keyed by host and checked address, so reuse never skips the check or the certificate's host.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import SplitResult

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error

from consumer.fetch.addresses import IPAddress
from consumer.fetch.errors import BlockedURL, FetchError
from consumer.fetch.pool import ConnectionPool


@dataclass(frozen=True)
class Target:
    """Where one HTTP hop goes, read from its URL."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    host_header: str

    @classmethod
    def of(cls, parts: SplitResult) -> "Target":
        host = parts.hostname
        if not host:
            raise BlockedURL("url has no host")
        scheme = parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise BlockedURL("url has an invalid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(scheme, host, port, path, host if parts.port is None else f"{host}:{parts.port}")


class StaleConnection(Exception):
    """A pooled connection the peer had closed: the caller tries once more on a new one."""


@dataclass
class Lease:
    """A connected connection for one exchange; the transfer says whether it may be kept."""

    conn: HTTPConnection
    guard: "SocketDeadline"
    reused: bool
    answered: bool = False  # a response status line arrived
    reusable: bool = False  # the response was read to its end and the peer keeps the connection open


class Connector:
    def __init__(self, resolve: Callable[[str, int, float], list[IPAddress]], check: Callable[[IPAddress], None],
                 connect_timeout_s: float, timeout_s: float, pool: ConnectionPool | None = None,
                 ca_certs: str | None = None):
        self._resolve = resolve
        self._check = check
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.pool = pool
        self._ca_certs = ca_certs  # None: the system's trust store; verification itself is never optional

    def checked_ip(self, target: Target, deadline: float) -> str:
        addrs = self._resolve(target.host, target.port, deadline)
        for ip in addrs:  # every address must pass: an attacker controls which one we would get
            self._check(ip)
        return str(addrs[0])

    @contextmanager
    def open(self, target: Target, ip: str, deadline: float, reuse: bool = True) -> Iterator[Lease]:
        """A connection to the checked `ip`; any network error in the block becomes a transient FetchError."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self.too_slow()
        key = (target.host, ip, target.port)
        pooled = self.pool.take(key) if reuse and self.pool is not None and target.scheme == "https" else None
        conn = pooled or self._new(target, ip, min(self.connect_timeout_s, remaining))  # reads get the rest below
        lease = Lease(conn, SocketDeadline(conn, deadline), reused=pooled is not None)
        try:
            if pooled is None:
                conn.connect()
            lease.guard.arm()
            conn.timeout = max(0.05, deadline - time.monotonic())  # urllib3 applies it to the socket before reading
            conn.sock.settimeout(conn.timeout)
            yield lease
        except FetchError:
            raise
        except (Urllib3Error, OSError, ValueError, http.client.HTTPException) as e:
            if lease.guard.fired:
                raise self.too_slow() from None
            if lease.reused and not lease.answered:
                raise StaleConnection() from None
            raise FetchError(f"cannot fetch from {target.host}: {type(e).__name__}: {e}", transient=True) from None
        finally:
            lease.guard.cancel()
            if lease.reusable and not lease.guard.fired and self.pool is not None and target.scheme == "https":
                self.pool.put(key, conn)
            else:
                conn.close()

    def _new(self, target: Target, ip: str, timeout: float) -> HTTPConnection:
        if target.scheme == "https":
            return HTTPSConnection(ip, target.port, timeout=timeout, server_hostname=target.host,
                                   assert_hostname=target.host, cert_reqs="CERT_REQUIRED", ca_certs=self._ca_certs)
        return HTTPConnection(ip, target.port, timeout=timeout)

    def too_slow(self) -> FetchError:
        return FetchError(f"download took longer than {self.timeout_s:g}s", transient=True)


class SocketDeadline:
    """Shuts the connection's socket down at the deadline."""

    def __init__(self, conn: HTTPConnection, deadline: float):
        self._conn = conn
        self._deadline = deadline
        self._timer: threading.Timer | None = None
        self.fired = False

    def arm(self) -> None:
        self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
