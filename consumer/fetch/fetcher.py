"""The fetch of one image URL: URL checks, the redirect loop (every hop checked again), retries.

A transient failure (ours) is retried here a few times with full-jitter exponential
backoff, then handed up still marked transient for the worker's delayed-retry path.
"""

from __future__ import annotations

import ipaddress
import random
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import SplitResult, urljoin, urlsplit

from consumer.fetch.addresses import AddressPolicy
from consumer.fetch.connect import Connector, StaleConnection, Target
from consumer.fetch.dns import GetAddrInfo, Resolver
from consumer.fetch.errors import BlockedURL, FetchError
from consumer.fetch.files import FileReader
from consumer.fetch.limits import FetchLimits
from consumer.fetch.pool import ConnectionPool
from consumer.fetch.transfer import http_get

MAX_URL_LENGTH = 4096


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str  # final URL after redirects
    attempts: int


class Fetcher:
    """Thread-safe; one instance serves all fetch threads."""

    def __init__(self, limits: FetchLimits, on_retry: Callable[[str], None] | None = None,
                 getaddrinfo: GetAddrInfo | None = None):
        self.limits = limits
        self._policy = AddressPolicy(limits.allow_networks)
        self._files = FileReader(limits.file_root, limits.max_bytes)
        # With an allow-list, local-only names (localhost, .internal) are looked up and judged by address.
        self.resolver = Resolver(getaddrinfo, local_names=bool(limits.allow_networks))
        self.pool = ConnectionPool(limits.pool_max_idle, limits.pool_idle_s) if limits.pool_max_idle > 0 else None
        self._connector = Connector(self.resolver.resolve, self._policy.check, limits.connect_timeout_s, limits.timeout_s,
                                    self.pool, limits.ca_certs)
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
        self._policy.check(ip)

    # -- internals ----------------------------------------------------------------
    def _fetch_once(self, url: str) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.limits.timeout_s
        for hop in range(self.limits.max_redirects + 1):
            parts = self._checked_parts(url)
            if parts.scheme.lower() == "file":
                if hop > 0:  # a remote server must never make us read a local file
                    raise BlockedURL("redirect to a file:// url is not allowed")
                if parts.netloc not in ("", "localhost"):
                    raise BlockedURL(f"file:// url names a host ({parts.netloc!r}); only local files are served")
                return self._files.read(parts.path), url
            if "@" in parts.netloc:
                # Credentials in an image URL are never legitimate, and `http://public@127.0.0.1/`
                # style userinfo exists to confuse whoever reads the URL.
                raise BlockedURL("url contains userinfo (user@host); refused")
            data, location = self._http_get(Target.of(parts), deadline)
            if location is None:
                return data, url
            url = urljoin(url, location)
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _http_get(self, target: Target, deadline: float) -> tuple[bytes, str | None]:
        ip = self._connector.checked_ip(target, deadline)  # every hop, pooled connection or not
        try:
            with self._connector.open(target, ip, deadline) as lease:
                return http_get(lease, target, deadline, self.limits)
        except StaleConnection:  # the origin closed the idle connection: once more on a new one
            with self._connector.open(target, ip, deadline, reuse=False) as lease:
                return http_get(lease, target, deadline, self.limits)

    def _checked_parts(self, url: str) -> SplitResult:
        if len(url) > MAX_URL_LENGTH:
            raise BlockedURL(f"url is {len(url)} characters, limit is {MAX_URL_LENGTH}")
        try:
            parts = urlsplit(url)
        except ValueError as e:  # e.g. malformed IPv6 brackets
            raise BlockedURL(f"url is malformed: {e}") from None
        scheme = parts.scheme.lower()
        if scheme not in self.limits.allowed_schemes:
            raise BlockedURL(f"url scheme {scheme!r} is not allowed (allowed: {', '.join(self.limits.allowed_schemes)})")
        return parts
