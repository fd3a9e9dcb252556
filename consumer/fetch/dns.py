"""The one lookup of a URL's host, bounded by the transfer's deadline, and whose problem its failure is.

| outcome                                                        | whose    | result                           |
|----------------------------------------------------------------|----------|----------------------------------|
| special-use name that never resolves on the internet (`.invalid`, `.test`, `.example`, `.onion`, `.alt`) | seller's | refused at once, no lookup (`BlockedURL`) |
| local-only name (`localhost`, `.localhost`, `.local`, `.internal`, `.home.arpa`) without an allow-list | seller's | refused at once, no lookup (`BlockedURL`) |
| "no such host" (EAI_NONAME: NXDOMAIN; EAI_NODATA: no address) answered twice, `CONFIRM_WAIT_S` apart | seller's | not transient (`reject`, `fetch_failed`) |
| "no such host" once, then no answer before the deadline        | ours     | transient                        |
| EAI_AGAIN (SERVFAIL, resolver timeout), EAI_FAIL (REFUSED, FORMERR, broken resolver), any other error, no answer by the deadline | ours | transient |

EAI_FAIL stays ours: a refusal or a malformed answer says more often that our resolver is
misconfigured than that the seller's name is wrong, and a wrong reject is worse than a DLQ
record. The re-query guards against one flapping answer; a negative cache may answer it,
which is still an authoritative "no". Local-only names are looked up when the operator set
`IMAGEGATE_ALLOW_NETWORKS` (a local stack allowing loopback uses `localhost`); the address
check then decides, as for any name.

getaddrinfo has no timeout of its own: each lookup runs on a daemon thread and the caller
stops waiting at the deadline. The getaddrinfo function is injectable (tests use a fake).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Callable

from consumer.fetch.addresses import IPAddress
from consumer.fetch.errors import BlockedURL, FetchError

GetAddrInfo = Callable[..., list]
NEVER_RESOLVE = ("invalid", "test", "example", "onion", "alt")  # RFC 6761, RFC 7686, RFC 9476
LOCAL_ONLY = ("localhost", "local", "internal", "home.arpa")  # RFC 6761, RFC 6762, ICANN 2024, RFC 8375
NOT_FOUND = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})
CONFIRM_WAIT_S = 0.5


class _NotFound(Exception):
    """An authoritative "no such host" for one lookup (not yet confirmed)."""


class Resolver:
    def __init__(self, getaddrinfo: GetAddrInfo | None = None, *, local_names: bool = False,
                 confirm_wait_s: float = CONFIRM_WAIT_S):
        self._getaddrinfo = getaddrinfo  # None: socket.getaddrinfo, looked up at each call
        self.local_names = local_names  # look local-only names up (an allow-list is configured)
        self.confirm_wait_s = confirm_wait_s

    def resolve(self, host: str, port: int, deadline: float) -> list[IPAddress]:
        """Every address of `host`, in the resolver's order."""
        self._refuse_special_use(host)
        try:
            infos = self._lookup(host, port, deadline)
        except _NotFound:
            infos = self._confirm(host, port, deadline)
        return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]

    def _refuse_special_use(self, host: str) -> None:
        name = host.rstrip(".").lower()
        for suffix in NEVER_RESOLVE:
            if name == suffix or name.endswith("." + suffix):
                raise BlockedURL(f"host {host[:80]!r} is a special-use name (.{suffix}) that does not resolve on the internet")
        for suffix in () if self.local_names else LOCAL_ONLY:
            if name == suffix or name.endswith("." + suffix):
                raise BlockedURL(f"host {host[:80]!r} is a local-only special-use name (.{suffix}): its addresses are not public")

    def _confirm(self, host: str, port: int, deadline: float) -> list:
        """Ask once more after a short wait: only a second "no such host" makes it the seller's."""
        if deadline - time.monotonic() <= self.confirm_wait_s:
            raise FetchError(f"host {host!r} was not found and there is no time left to confirm it", transient=True)
        time.sleep(self.confirm_wait_s)
        try:
            return self._lookup(host, port, deadline)
        except _NotFound as e:
            raise FetchError(f"host {host!r} does not exist ({e}; confirmed by a second lookup)") from None

    def _lookup(self, host: str, port: int, deadline: float) -> list:
        try:
            host.encode("idna")  # e.g. a 64-character label: the seller's URL is malformed, not our DNS
        except UnicodeError as e:
            raise BlockedURL(f"host name {host[:80]!r} is not valid: {e}") from None
        result: dict[str, object] = {}
        done = threading.Event()
        getaddrinfo = self._getaddrinfo or socket.getaddrinfo

        def lookup() -> None:
            try:
                result["infos"] = getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except BaseException as e:  # handed to the caller below
                result["error"] = e
            finally:
                done.set()

        threading.Thread(target=lookup, name="dns", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise FetchError(f"DNS lookup of {host!r} did not answer in time", transient=True)
        return _answer(host, result)


def _answer(host: str, result: dict[str, object]) -> list:
    err = result.get("error")
    if err is None:
        return result["infos"]  # type: ignore[return-value]
    if isinstance(err, UnicodeError):
        raise BlockedURL(f"host name {host[:80]!r} is not valid: {err}") from None
    if isinstance(err, socket.gaierror) and err.errno in NOT_FOUND:
        raise _NotFound(err.strerror or str(err))
    if isinstance(err, socket.gaierror):  # EAI_AGAIN, EAI_FAIL, ...: the resolver's trouble, ours
        raise FetchError(f"cannot resolve host {host!r}: {err.strerror}", transient=True) from None
    raise FetchError(f"cannot resolve host {host!r}: {err}", transient=True) from None
