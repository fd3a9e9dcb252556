"""HTTPS connection reuse: a second image from one origin reuses the verified connection,
without weakening the SSRF guard (the name is looked up and checked on every fetch, and a
pooled connection only serves the address that passed again), certificate verification or
the whole-transfer deadline.

The origin is a local HTTPS server with a certificate for `images.shop-cdn.com` from a
throw-away CA (openssl); a fake getaddrinfo sends that name to 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consumer.fetch import BlockedURL, Fetcher, FetchError, FetchLimits

HOST = "images.shop-cdn.com"
OTHERS = [f"img{i}.shop-cdn.com" for i in range(1, 5)]  # also in the certificate
BODY = b"\xff\xd8 not really a jpeg, bytes are bytes" * 100

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test CA")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=imagegate test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={HOST}")
    (d / "san.ext").write_text(f"subjectAltName=DNS:{HOST}," + ",".join(f"DNS:{n}" for n in OTHERS) + "\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "2", "-extfile", "san.ext")
    return d


class TLSOrigin:
    """HTTP/1.1 keep-alive over TLS; counts TCP connections and requests. /img serves BODY,
    /close serves it with `Connection: close`, /slow trickles it."""

    def __init__(self, certs):
        self.connections = 0
        self.closed = 0
        self.idle_timeout_s: float | None = None  # the server's keep-alive timeout
        self.requests: list[str] = []
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                origin.connections += 1
                self.timeout = origin.idle_timeout_s
                super().setup()

            def finish(self):
                super().finish()
                origin.closed += 1

            def do_GET(self):  # noqa: N802
                origin.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                if self.path == "/close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.path == "/slow":
                    for b in BODY:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                self.wfile.write(BODY)

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/img", host: str = HOST) -> str:
        return f"https://{host}:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin(certs):
    o = TLSOrigin(certs)
    yield o
    o.close()


class DNS:
    """getaddrinfo: `answers[name]` (an address), counting lookups."""

    def __init__(self, **answers: str):
        self.answers = {k.replace("_", "."): v for k, v in answers.items()}
        self.lookups: list[str] = []

    def __call__(self, host, port, *a, **k):
        self.lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.answers.get(host, "127.0.0.1"), port))]


def fetcher(certs, dns, **kw) -> Fetcher:
    limits = FetchLimits(**{"allow_networks": ("127.0.0.0/8",), "retries": 0, "timeout_s": 5,
                            "ca_certs": str(certs / "ca.pem"), **kw})
    return Fetcher(limits, getaddrinfo=dns)


def test_a_second_image_from_one_origin_reuses_the_verified_connection(certs, origin):
    dns = DNS()
    f = fetcher(certs, dns)
    for _ in range(3):
        assert f.fetch(origin.url()).data == BODY
    assert origin.connections == 1 and len(origin.requests) == 3
    assert dns.lookups == [HOST] * 3, "the name is looked up and checked on every fetch, pooled or not"


def test_without_a_pool_every_fetch_connects_anew(certs, origin):
    f = fetcher(certs, DNS(), pool_max_idle=0)
    for _ in range(3):
        f.fetch(origin.url())
    assert origin.connections == 3


def test_a_pooled_connection_never_serves_an_address_that_fails_the_check_now(certs, origin):
    """The name now resolves to a private address: refused before any connection, the idle
    connection to the old address notwithstanding."""
    dns = DNS()
    f = fetcher(certs, dns, allow_networks=("127.0.0.1/32",))
    f.fetch(origin.url())
    dns.answers[HOST] = "127.0.0.2"  # loopback, but outside the allow-list: not public
    with pytest.raises(BlockedURL, match="not public"):
        f.fetch(origin.url())
    assert origin.connections == 1 and len(origin.requests) == 1


def test_certificates_are_verified_on_every_new_connection(certs, origin):
    """Another name on the same address gets its own connection, whose certificate does not match."""
    f = fetcher(certs, DNS())
    f.fetch(origin.url())
    with pytest.raises(FetchError, match="(?i)certificate|hostname"):
        f.fetch(origin.url(host="other.shop-cdn.com"))
    assert len(origin.requests) == 1


def test_an_unknown_ca_is_refused(certs, origin):
    f = Fetcher(FetchLimits(allow_networks=("127.0.0.0/8",), retries=0, timeout_s=5), getaddrinfo=DNS())
    with pytest.raises(FetchError, match="(?i)certificate"):
        f.fetch(origin.url())
    assert origin.requests == []


def test_connection_close_is_honoured(certs, origin):
    f = fetcher(certs, DNS())
    f.fetch(origin.url("/close"))
    f.fetch(origin.url())
    assert origin.connections == 2


def closed_by_the_origin(f: Fetcher, origin: TLSOrigin) -> None:
    """Wait (bounded) until the origin has closed the one idle connection, as its keep-alive timeout does."""
    origin.idle_timeout_s = 0.2
    f.fetch(origin.url())
    deadline = time.monotonic() + 10
    while origin.closed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert origin.closed == 1


def test_an_idle_connection_the_origin_closed_is_replaced_without_a_failure(certs, origin):
    retries = []
    f = Fetcher(FetchLimits(allow_networks=("127.0.0.0/8",), retries=2, timeout_s=5, ca_certs=str(certs / "ca.pem")),
                on_retry=retries.append, getaddrinfo=DNS())
    closed_by_the_origin(f, origin)
    assert f.fetch(origin.url()).data == BODY
    assert retries == [] and origin.connections == 2


def test_a_pooled_connection_that_dies_as_it_is_used_is_replaced_once(certs, origin, monkeypatch):
    """The race the liveness check cannot see: the connection looks alive when taken and the
    origin's close arrives with the request. One new connection, no failure, no retry counted."""
    from urllib3.connection import HTTPSConnection

    retries = []
    f = Fetcher(FetchLimits(allow_networks=("127.0.0.0/8",), retries=2, timeout_s=5, ca_certs=str(certs / "ca.pem")),
                on_retry=retries.append, getaddrinfo=DNS())
    closed_by_the_origin(f, origin)
    monkeypatch.setattr(HTTPSConnection, "is_connected", property(lambda self: self.sock is not None))
    assert f.fetch(origin.url()).data == BODY
    assert retries == [] and origin.connections == 2


def test_the_whole_transfer_deadline_holds_on_a_reused_connection(certs, origin):
    f = fetcher(certs, DNS(), timeout_s=1.0)
    f.fetch(origin.url())
    with pytest.raises(FetchError, match="longer than 1s") as e:
        f.fetch(origin.url("/slow"))  # one byte every 0.1 s of a body much larger than 10 bytes
    assert e.value.transient and origin.connections == 1
    assert len(f.pool) == 0, "a connection cut at the deadline is not kept"


def test_the_pool_is_bounded(certs, origin):
    f = fetcher(certs, DNS(), pool_max_idle=2)
    for name in OTHERS:  # four names: four keys
        f.fetch(origin.url(host=name))
    assert len(f.pool) == 2 and origin.connections == 4
    f.fetch(origin.url(host=OTHERS[-1]))  # the newest are kept
    assert origin.connections == 4
