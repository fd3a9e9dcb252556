"""Every transfer ends by its deadline whatever the peer does, and failures are sorted into
the seller's (permanent: reject) and ours (transient: retried, never a reject).

The peers here are slower than the deadline by construction: a raw socket server that
sends one byte every 0.3 s of a body larger than one 64 KiB read (so a deadline checked
only between reads cannot see it), one that trickles its status line, and a resolver that
never answers. Each test checks that the fetch gave up near its deadline: a bound on the
wait, not a speed figure.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from consumer.events import ReasonCode
from consumer.fetch import BlockedURL, Fetcher, FetchError, FetchLimits

DEADLINE_S = 1.0
SLACK_S = 1.5  # thread wake-ups on a loaded 2-core machine; the old code held fetches for the whole trickle (minutes)


class TricklePeer:
    """Accepts connections and dribbles `payload` one byte per `interval_s`, for as long as the client listens."""

    def __init__(self, payload: bytes, interval_s: float = 0.3):
        self.payload, self.interval_s = payload, interval_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/x.jpg"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    def _dribble(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            for b in self.payload:
                if self.stop.is_set():
                    break
                conn.sendall(bytes([b]))
                time.sleep(self.interval_s)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def fetcher(**kw) -> Fetcher:
    return Fetcher(FetchLimits(**{"allow_networks": ("127.0.0.0/8",), "timeout_s": DEADLINE_S, "retries": 0,
                                  "backoff_ms": 1.0, **kw}))


def timed_failure(f: Fetcher, url: str) -> tuple[FetchError, float]:
    t0 = time.monotonic()
    with pytest.raises(FetchError) as e:
        f.fetch(url)
    return e.value, time.monotonic() - t0


def test_body_trickled_one_byte_at_a_time_ends_at_the_deadline():
    body = b"\xff" * 200_000  # > one 64 KiB read: a between-reads check alone would wait for all of it
    peer = TricklePeer(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + body, interval_s=0.3)
    try:
        err, took = timed_failure(fetcher(), peer.url)
    finally:
        peer.close()
    assert err.transient, "a slow origin is our transient trouble, never the seller's verdict"
    assert "longer than 1s" in str(err)
    assert took < DEADLINE_S + SLACK_S, f"fetch held for {took:.1f}s against a {DEADLINE_S}s deadline"


def test_status_line_trickled_ends_at_the_deadline():
    """Bounded on its own: a fetch that ignores the deadline here would be held for the whole
    trickle (50 minutes), so it runs on a thread that the test stops waiting for."""
    peer = TricklePeer(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10_000, interval_s=0.3)
    outcome: dict[str, object] = {}

    def fetch() -> None:
        t0 = time.monotonic()
        try:
            fetcher().fetch(peer.url)
        except FetchError as e:
            outcome["error"] = e
        outcome["took"] = time.monotonic() - t0

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    try:
        worker.join(DEADLINE_S + SLACK_S + 10)  # generous: a working fetch returns within DEADLINE_S + SLACK_S
        held = worker.is_alive()
    finally:
        peer.close()  # also ends a fetch that is still held (the peer stops at its next byte)
    assert not held, f"fetch still held {DEADLINE_S + SLACK_S + 10:.1f}s into a trickled status line ({DEADLINE_S}s deadline)"
    err, took = outcome.get("error"), outcome["took"]
    assert isinstance(err, FetchError) and err.transient, outcome
    assert took < DEADLINE_S + SLACK_S, f"fetch held for {took:.1f}s against a {DEADLINE_S}s deadline"


def test_dns_that_never_answers_ends_at_the_deadline(monkeypatch):
    def hang(*a, **k):
        time.sleep(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    err, took = timed_failure(fetcher(), "http://images.example.com/a.jpg")
    assert err.transient and "DNS" in str(err)
    assert took < DEADLINE_S + SLACK_S


@pytest.mark.parametrize("error", [socket.EAI_AGAIN, socket.EAI_FAIL])
def test_dns_failures_are_ours_and_transient(monkeypatch, error):
    def fail(*a, **k):
        raise socket.gaierror(error, "resolver trouble")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    err, _ = timed_failure(fetcher(), "http://images.example.com/a.jpg")
    assert err.transient  # the resolver's trouble (SERVFAIL, refused): never a seller reject
    # A confirmed "no such host" (EAI_NONAME) is the seller's since issue 23: tests/unit/test_fetch_dns.py.


def test_over_long_host_label_is_the_sellers_malformed_url_not_a_crash():
    with pytest.raises(BlockedURL, match="not valid"):
        fetcher().fetch("http://" + "a" * 64 + ".example.com/x.jpg")


def test_site_local_ipv6_is_refused():
    with pytest.raises(BlockedURL):
        Fetcher(FetchLimits()).check_address(__import__("ipaddress").ip_address("fec0::1"))


@pytest.mark.parametrize("status,transient", [(404, False), (410, False), (403, False), (400, False),
                                              (500, True), (503, True), (429, True), (408, True),
                                              (425, True)])
def test_http_status_is_sorted_into_seller_and_ours(small_origin, status, transient):
    err, _ = timed_failure(fetcher(), f"{small_origin.url}/status/{status}")
    assert err.transient is transient
    assert err.code is ReasonCode.FETCH_FAILED


def test_a_slow_first_byte_within_the_deadline_is_not_a_timeout():
    """Silence shorter than the whole-transfer deadline but longer than the connect timeout is fine."""
    body = b"\xff\xd8" + b"x" * 100
    peer = TricklePeer(b"", interval_s=0)
    peer.payload = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def slow_start(conn):
        try:
            conn.recv(65536)
            time.sleep(1.5)  # longer than the 0.5 s connect timeout, inside the 4 s deadline
            conn.sendall(peer.payload)
        finally:
            conn.close()

    peer._dribble = slow_start
    try:
        got = fetcher(timeout_s=4.0, connect_timeout_s=0.5).fetch(peer.url)
    finally:
        peer.close()
    assert got.data == body


def test_425_too_early_is_ours_and_retried_not_a_seller_reject(small_origin):
    """425 Too Early: the origin will not answer a replayable request yet. Its state, not the URL."""
    err, _ = timed_failure(fetcher(retries=2), f"{small_origin.url}/status/425")
    assert err.transient, "425 must be our transient trouble, never the seller's reject"
    assert small_origin.hits["/status/425"] == 3, "retried: one attempt and two retries"
    assert "HTTP 425" in str(err) and "gave up after 3 attempts" in str(err)
