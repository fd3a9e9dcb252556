"""The HTTP exchange on a checked connection: request, status, and a read bounded in bytes and time.

Never inflate: a gzip "image" of 25 KB can expand to gigabytes, so the request asks for
`identity` and bytes count against `max_bytes` exactly as they arrive (an encoded body
then fails to decode, the seller's problem). Reads take what has arrived (`read1`), so a
trickle cannot hold one call open past the deadline guard.
"""

from __future__ import annotations

import time

from consumer.events import ReasonCode
from consumer.fetch.connect import Lease, SocketDeadline, Target
from consumer.fetch.errors import FetchError
from consumer.fetch.limits import FetchLimits

REDIRECTS = {301, 302, 303, 307, 308}
_TRANSIENT_4XX = {408, 425, 429}  # request timeout, too early, too many requests: the origin's load, not the URL
_CHUNK = 64 * 1024


def http_get(lease: Lease, target: Target, deadline: float, limits: FetchLimits) -> tuple[bytes, str | None]:
    """The body, or (b"", Location) for a redirect the caller follows (and checks) itself."""
    conn = lease.conn
    conn.request("GET", target.path, headers={"Host": target.host_header, "User-Agent": limits.user_agent,
                                              "Accept": "image/*", "Accept-Encoding": "identity"},
                 preload_content=False, decode_content=False)
    resp = conn.getresponse()
    lease.answered = True
    if resp.status in REDIRECTS:
        location = resp.headers.get("Location")
        if not location:
            raise FetchError(f"HTTP {resp.status} redirect without Location")
        return b"", location
    if resp.status >= 500 or resp.status in _TRANSIENT_4XX:
        raise FetchError(f"HTTP {resp.status} from {target.host}", transient=True)
    if resp.status != 200:
        raise FetchError(f"HTTP {resp.status} from {target.host}")
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchError(f"image is {int(declared)} bytes, limit is {limits.max_bytes}", code=ReasonCode.TOO_LARGE)
    data = _read_bounded(resp, lease.guard, deadline, limits)
    # Read to its end: the connection may serve the next image from this origin, unless the peer closes it.
    lease.reusable = resp.version == 11 and resp.headers.get("Connection", "").lower() != "close"
    return data, None


def _read_bounded(resp, guard: SocketDeadline, deadline: float, limits: FetchLimits) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = resp.read1(_CHUNK)  # what has arrived: a trickle cannot hold one call open
        if guard.fired or time.monotonic() > deadline:
            raise FetchError(f"download took longer than {limits.timeout_s:g}s", transient=True)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise FetchError(f"image is over the {limits.max_bytes}-byte limit", code=ReasonCode.TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)
