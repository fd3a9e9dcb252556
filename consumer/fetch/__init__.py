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

Whose problem: 404/410 and other 4xx, refused URLs, bad host names, hosts that do not
exist (confirmed) and special-use names are the seller's (`FetchError`, not transient,
-> `reject`); resolver trouble, connection errors, timeouts, 408, 425, 429 and 5xx are
ours (transient): retried here a few times with full-jitter exponential backoff, then
handed to the worker's delayed-retry path (consumer/retry.py). DNS in detail: dns.py.

The pieces, one job each:

- `fetcher.py`   the URL and redirect loop, retries with backoff (`Fetcher`)
- `addresses.py` which addresses a seller's URL may reach (`AddressPolicy`)
- `dns.py`       the one lookup of a host, bounded by the deadline
- `connect.py`   a connection to the checked address, shut down at the deadline
- `pool.py`      idle HTTPS connections kept per (host, checked address) for reuse
- `transfer.py`  the HTTP exchange: request, status, bounded read
- `files.py`     `file://` reads confined to a root
"""

from consumer.fetch.errors import BlockedURL, FetchError
from consumer.fetch.fetcher import MAX_URL_LENGTH, Fetched, Fetcher
from consumer.fetch.limits import FetchLimits

__all__ = ["MAX_URL_LENGTH", "BlockedURL", "FetchError", "FetchLimits", "Fetched", "Fetcher"]
