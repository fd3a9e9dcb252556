"""DNS rebinding: the fetcher must connect to the address it checked, not look the name up again.

A rebinding attacker's DNS answers a public address to the first query (the one the SSRF guard
checks) and 127.0.0.1 to the next (the one a client that connects by name would make). These
tests stand up a small fake network in-process: `socket.getaddrinfo` is replaced by a resolver
that plays the attacker for `rebind.attacker-example.com`, and `socket.socket.connect` routes the
public addresses to a local "public" origin, so nothing leaves the machine. An internal origin listens on 127.0.0.1 at the
URL's port, which is where a second lookup would lead. Loopback is NOT allowed by the fetcher's
limits, so only a connection to the checked address can succeed honestly.
"""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from consumer.fetch import Fetcher, FetchLimits
from tests.origin import Origin

NAME = "rebind.attacker-example.com"
PUBLIC_IP = "93.184.216.34"  # a global address: passes the guard
STEADY_NAME, STEADY_IP = "images.shop-example.com", "93.184.216.35"  # an honest name, always the same answer


class RebindingNetwork:
    """A fake DNS and a fake route to "the internet", installed with `install(monkeypatch)`.

    DNS: NAME -> PUBLIC_IP on the first query, 127.0.0.1 on every later one (the attacker);
    STEADY_NAME -> STEADY_IP always; anything else goes to the real resolver.
    Routing: a TCP connect to a public address reaches the local "public" origin instead.
    """

    def __init__(self, public_port: int):
        self.public_port = public_port
        self.lookups: Counter[str] = Counter()
        self.connects: list[tuple[str, int]] = []

    def install(self, monkeypatch) -> "RebindingNetwork":
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
        net = self

        def getaddrinfo(host, port, *args, **kwargs):
            host = host.decode() if isinstance(host, bytes) else host
            net.lookups[host] += 1
            if host == NAME:
                ip = PUBLIC_IP if net.lookups[host] == 1 else "127.0.0.1"
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
            if host == STEADY_NAME:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (STEADY_IP, port))]
            return real_getaddrinfo(host, port, *args, **kwargs)

        def connect(sock, address):
            net.connects.append((address[0], address[1]))
            if address[0] in (PUBLIC_IP, STEADY_IP):
                address = ("127.0.0.1", net.public_port)
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)
        return self


@pytest.fixture
def two_origins(tmp_path):
    public_root, internal_root = tmp_path / "public", tmp_path / "internal"
    public_root.mkdir()
    internal_root.mkdir()
    (public_root / "a.jpg").write_bytes(b"PUBLIC-IMAGE-BYTES")
    (internal_root / "a.jpg").write_bytes(b"INTERNAL-SECRET")
    public, internal = Origin(public_root), Origin(internal_root)
    yield public, internal
    public.close()
    internal.close()


def port_of(o: Origin) -> int:
    return o.server.server_address[1]


def record_host_headers(monkeypatch, o: Origin) -> list[str]:
    hosts: list[str] = []
    handler = o.server.RequestHandlerClass
    real = handler.do_GET

    def do_get(self):
        hosts.append(self.headers.get("Host"))
        return real(self)

    monkeypatch.setattr(handler, "do_GET", do_get)
    return hosts


def test_connects_to_the_checked_address_not_a_fresh_lookup(monkeypatch, two_origins):
    public, internal = two_origins
    net = RebindingNetwork(port_of(public)).install(monkeypatch)
    hosts = record_host_headers(monkeypatch, public)
    fetcher = Fetcher(FetchLimits(retries=0, timeout_s=5))  # default limits: loopback is refused

    got = fetcher.fetch(f"http://{NAME}:{port_of(internal)}/img/a.jpg")

    assert internal.hits == {}, "a second lookup of the name reached the internal service on 127.0.0.1"
    assert net.lookups[NAME] == 1, f"the name was resolved {net.lookups[NAME]} times; the checked answer must be reused"
    assert got.data == b"PUBLIC-IMAGE-BYTES"
    assert public.hits == {"/img/a.jpg": 1}
    assert net.connects == [(PUBLIC_IP, port_of(internal))]
    # Pinned to the address, but still a request for the name (virtual hosts, CDNs route on it).
    assert hosts == [f"{NAME}:{port_of(internal)}"]


def test_the_fake_network_does_reach_the_internal_service_by_name(monkeypatch, two_origins):
    """Control: the test above would see a connect-by-name client. Resolving the name a second time
    (as any client given the hostname would) lands on the internal origin."""
    public, internal = two_origins
    net = RebindingNetwork(port_of(public)).install(monkeypatch)
    socket.getaddrinfo(NAME, 80)  # the guard's lookup: public
    with socket.create_connection((NAME, port_of(internal)), timeout=5) as s:  # a fresh lookup: 127.0.0.1
        s.sendall(f"GET /img/a.jpg HTTP/1.0\r\nHost: {NAME}\r\n\r\n".encode())
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.endswith(b"INTERNAL-SECRET")
    assert internal.hits == {"/img/a.jpg": 1}


def test_rebinding_on_a_redirect_hop_is_also_pinned(monkeypatch, two_origins):
    """A redirect to the rebinding name is resolved once at that hop and connected to as checked."""
    public, internal = two_origins
    net = RebindingNetwork(port_of(public)).install(monkeypatch)
    # The public origin redirects to the rebinding name on the internal origin's port.
    target = f"http://{NAME}:{port_of(internal)}/img/a.jpg"
    fetcher = Fetcher(FetchLimits(retries=0, timeout_s=5))
    got = fetcher.fetch(f"http://{STEADY_NAME}:{port_of(internal)}/redirect?to={target}")
    assert internal.hits == {}, "the redirect hop looked the name up again and reached 127.0.0.1"
    assert net.lookups[NAME] == 1
    assert got.data == b"PUBLIC-IMAGE-BYTES"
    assert public.hits == {"/redirect": 1, "/img/a.jpg": 1}
