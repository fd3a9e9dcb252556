"""The one lookup of a URL's host, bounded by the transfer's deadline.

getaddrinfo has no timeout of its own: it runs on a daemon thread and the caller stops
waiting at the deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from consumer.fetch.addresses import IPAddress
from consumer.fetch.errors import BlockedURL, FetchError


def resolve(host: str, port: int, deadline: float) -> list[IPAddress]:
    """Every address of `host`, in the resolver's order."""
    infos = _getaddrinfo_by(host, port, deadline)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _getaddrinfo_by(host: str, port: int, deadline: float) -> list:
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
