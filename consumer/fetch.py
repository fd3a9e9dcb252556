"""Fetch image bytes from seller-chosen URLs, safely.

Sellers choose these URLs, so every request goes through an SSRF guard: only allowed
schemes; the host is resolved once and every address must be public (no private,
loopback, link-local, multicast, reserved or cloud-metadata addresses) unless a CIDR
allow-list exempts it; the connection goes to the address that was checked (no second
DNS lookup that a rebinding attack could change); redirects are followed by hand and
re-checked at every hop. Sizes and times are bounded. `file://` is confined to a root.

Every transfer ends by its deadline whatever the peer does: DNS runs under a bound, and
at the deadline the socket is shut down, so a read blocked on a peer that trickles one
byte at a time returns at once (a timeout between reads alone cannot see a trickle).

Whose problem: 404/410 and other 4xx, refused URLs and bad host names are the seller's
(`FetchError`, not transient, -> `reject`); DNS failures, connection errors, timeouts, 408,
425, 429 and 5xx are ours (transient): retried here a few times with full-jitter
exponential backoff, then handed to the worker's delayed-retry path (consumer/retry.py).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import random
import socket
import stat as _stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error

from consumer.events import ReasonCode

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the low 32 bits are an IPv4 address
MAX_URL_LENGTH = 4096
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_TRANSIENT_4XX = {408, 425, 429}  # request timeout, too early, too many requests: the origin's load, not the URL


class FetchError(Exception):
    """The image could not be fetched. `code` is the reason code for the verdict."""

    def __init__(self, message: str, *, transient: bool = False, code: ReasonCode = ReasonCode.FETCH_FAILED):
        super().__init__(message)
        self.transient = transient
        self.code = code


class BlockedURL(FetchError):
    """Refused by policy (scheme, address, file root). Never retried."""


@dataclass(frozen=True)
class FetchLimits:
    allowed_schemes: tuple[str, ...] = ("https", "http")
    allow_networks: tuple[str, ...] = ()
    file_root: Path | None = None
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    max_bytes: int = 25 << 20
    max_redirects: int = 3
    retries: int = 3
    backoff_ms: float = 200.0
    user_agent: str = "imagegate"


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str  # final URL after redirects
    attempts: int


class Fetcher:
    """Thread-safe; one instance serves all fetch threads."""

    def __init__(self, limits: FetchLimits, on_retry=None):
        self.limits = limits
        self._allow = [ipaddress.ip_network(c, strict=False) for c in limits.allow_networks]
        self._root = limits.file_root.resolve() if limits.file_root else None
        self._on_retry = on_retry  # callback(reason: str) for metrics

    # -- public -----------------------------------------------------------------
    def fetch(self, url: str) -> Fetched:
        attempt = 0
        while True:
            attempt += 1
            try:
                return Fetched(*self._fetch_once(url), attempts=attempt)
            except FetchError as e:
                if not e.transient or attempt > self.limits.retries:
                    if e.transient:
                        raise FetchError(f"{e} (gave up after {attempt} attempts)", transient=True, code=e.code) from None
                    raise
                if self._on_retry:
                    self._on_retry("fetch")
                # Full jitter: spreads retries of many images failing at once on one origin.
                time.sleep(random.uniform(0, self.limits.backoff_ms * (2 ** (attempt - 1))) / 1000.0)

    def check_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if any(ip in net for net in self._allow):
            return
        if isinstance(ip, ipaddress.IPv6Address):
            # IPv6 forms that carry an IPv4 address reach that address: judge the IPv4 one too.
            embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
            if embedded is not None:
                self.check_address(embedded)  # the wrapper is only a route to this IPv4 address
                return
        if ip in _METADATA:
            raise BlockedURL(f"address {ip} is a cloud metadata endpoint")
        site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10: deprecated, still routed inside sites
        if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
                or site_local or not ip.is_global):  # not is_global also catches 100.64.0.0/10 (carrier-grade NAT) and the like
            raise BlockedURL(f"address {ip} is not public (private, loopback, link-local, multicast or reserved)")

    # -- internals ----------------------------------------------------------------
    def _fetch_once(self, url: str) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.limits.timeout_s
        for hop in range(self.limits.max_redirects + 1):
            if len(url) > MAX_URL_LENGTH:
                raise BlockedURL(f"url is {len(url)} characters, limit is {MAX_URL_LENGTH}")
            try:
                parts = urlsplit(url)
            except ValueError as e:  # e.g. malformed IPv6 brackets
                raise BlockedURL(f"url is malformed: {e}") from None
            scheme = parts.scheme.lower()
            if scheme not in self.limits.allowed_schemes:
                raise BlockedURL(f"url scheme {scheme!r} is not allowed (allowed: {', '.join(self.limits.allowed_schemes)})")
            if scheme == "file":
                if hop > 0:  # a remote server must never make us read a local file
                    raise BlockedURL("redirect to a file:// url is not allowed")
                if parts.netloc not in ("", "localhost"):
                    raise BlockedURL(f"file:// url names a host ({parts.netloc!r}); only local files are served")
                return self._read_file(parts.path), url
            if "@" in parts.netloc:
                # Credentials in an image URL are never legitimate, and `http://public@127.0.0.1/`
                # style userinfo exists to confuse whoever reads the URL.
                raise BlockedURL("url contains userinfo (user@host); refused")
            data, location = self._http_get(parts, deadline)
            if location is None:
                return data, url
            url = urljoin(url, location)
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _resolve(self, host: str, port: int, deadline: float) -> str:
        infos = _getaddrinfo_by(host, port, deadline)
        addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        for ip in addrs:  # every address must pass: an attacker controls which one we would get
            self.check_address(ip)
        return str(addrs[0])

    def _http_get(self, parts, deadline: float) -> tuple[bytes, str | None]:
        host = parts.hostname
        if not host:
            raise BlockedURL("url has no host")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise BlockedURL("url has an invalid port") from None
        ip = self._resolve(host, port, deadline)  # connect to this checked address: no second lookup
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"download took longer than {self.limits.timeout_s:g}s", transient=True)
        timeout = min(self.limits.connect_timeout_s, remaining)  # for connect; reads get the rest below
        if parts.scheme.lower() == "https":
            conn: HTTPConnection = HTTPSConnection(ip, port, timeout=timeout, server_hostname=host, assert_hostname=host,
                                                   cert_reqs="CERT_REQUIRED")
        else:
            conn = HTTPConnection(ip, port, timeout=timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        guard = _SocketDeadline(conn, deadline)
        try:
            conn.connect()
            guard.arm()
            conn.timeout = max(0.05, deadline - time.monotonic())  # urllib3 applies it to the socket before reading
            conn.sock.settimeout(conn.timeout)
            # Never inflate: a gzip "image" of 25 KB can expand to gigabytes. Bytes count
            # against max_bytes exactly as they arrive; an encoded body fails to decode.
            conn.request("GET", path, headers={"Host": host_header, "User-Agent": self.limits.user_agent,
                                               "Accept": "image/*", "Accept-Encoding": "identity"},
                         preload_content=False, decode_content=False)
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {resp.status} redirect without Location")
                return b"", location
            if resp.status >= 500 or resp.status in _TRANSIENT_4XX:
                raise FetchError(f"HTTP {resp.status} from {host}", transient=True)
            if resp.status != 200:
                raise FetchError(f"HTTP {resp.status} from {host}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise FetchError(f"image is {int(declared)} bytes, limit is {self.limits.max_bytes}", code=ReasonCode.TOO_LARGE)
            chunks, total = [], 0
            while True:
                chunk = resp.read1(_CHUNK)  # what has arrived: a trickle cannot hold one call open
                if guard.fired or time.monotonic() > deadline:
                    raise FetchError(f"download took longer than {self.limits.timeout_s:g}s", transient=True)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.limits.max_bytes:
                    raise FetchError(f"image is over the {self.limits.max_bytes}-byte limit", code=ReasonCode.TOO_LARGE)
                chunks.append(chunk)
            return b"".join(chunks), None
        except FetchError:
            raise
        except (Urllib3Error, OSError, ValueError, http.client.HTTPException) as e:
            if guard.fired:
                raise FetchError(f"download took longer than {self.limits.timeout_s:g}s", transient=True) from None
            raise FetchError(f"cannot fetch from {host}: {type(e).__name__}: {e}", transient=True) from None
        finally:
            guard.cancel()
            conn.close()

    def _read_file(self, url_path: str) -> bytes:
        if self._root is None:
            raise BlockedURL("file:// URLs are not enabled (no file_root configured)")
        rel = unquote(url_path)  # %2e%2e/ becomes ../ here, and is then caught by the root check
        if "\x00" in rel:
            raise BlockedURL("file path contains a NUL byte")
        candidate = Path(rel) if os.path.isabs(rel) else self._root / rel
        try:
            real = candidate.resolve(strict=True)  # follows symlinks: an escape is caught below
        except (OSError, RuntimeError, ValueError):
            raise FetchError(f"file not found: {rel}") from None
        if not self._inside_root(real):
            raise BlockedURL(f"file {rel} is outside the allowed root")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            raise FetchError(f"cannot open file {rel}: {e.strerror}") from None
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FetchError(f"not a regular file: {rel}")
        with os.fdopen(fd, "rb", buffering=0) as f:
            # Re-check what was actually opened: a path swapped for a symlink or a FIFO after
            # the check above must not be read.
            link = f"/proc/self/fd/{fd}"
            opened = Path(os.readlink(link)) if os.path.islink(link) else real
            if not self._inside_root(opened):
                raise BlockedURL(f"file {rel} is outside the allowed root")
            if st.st_size > self.limits.max_bytes:
                raise FetchError(f"image is {st.st_size} bytes, limit is {self.limits.max_bytes}", code=ReasonCode.TOO_LARGE)
            data = f.read(self.limits.max_bytes + 1)  # it may have grown since fstat
        if len(data) > self.limits.max_bytes:
            raise FetchError(f"image is over the {self.limits.max_bytes}-byte limit", code=ReasonCode.TOO_LARGE)
        return data

    def _inside_root(self, real: Path) -> bool:
        assert self._root is not None
        return real == self._root or self._root in real.parents


class _SocketDeadline:
    """Shuts the connection's socket down at the deadline, so a read or write blocked on a
    peer that trickles (or says nothing) returns at once instead of at the next timeout."""

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


def _getaddrinfo_by(host: str, port: int, deadline: float) -> list:
    """getaddrinfo has no timeout of its own: run it on a daemon thread and stop waiting at the deadline."""
    try:
        host.encode("idna")  # e.g. a 64-character label: the seller's URL is malformed, not our DNS
    except UnicodeError as e:
        raise BlockedURL(f"host name {host[:80]!r} is not valid: {e}") from None
    result: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # handed to the caller below
            result["error"] = e
        finally:
            done.set()

    threading.Thread(target=lookup, name="dns", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise FetchError(f"DNS lookup of {host!r} did not answer in time", transient=True)
    err = result.get("error")
    if isinstance(err, UnicodeError):
        raise BlockedURL(f"host name {host[:80]!r} is not valid: {err}") from None
    if isinstance(err, socket.gaierror):
        # NXDOMAIN and SERVFAIL both look like this during a resolver outage: ours, retried.
        raise FetchError(f"cannot resolve host {host!r}: {err.strerror}", transient=True) from None
    if err is not None:
        raise FetchError(f"cannot resolve host {host!r}: {err}", transient=True) from None
    return result["infos"]  # type: ignore[return-value]
