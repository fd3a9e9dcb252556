"""Whose problem a DNS outcome is: a host that does not exist is the seller's, a resolver in
trouble is ours, and special-use names are refused without asking any resolver.

The resolver here is a fake getaddrinfo handed to the Fetcher: it answers from a script
(one answer per call) and counts its calls, so each test can tell "refused without a
lookup", "asked twice to confirm" and "asked once" apart.
"""

from __future__ import annotations

import socket
import threading

import pytest

from consumer.events import ReasonCode
from consumer.fetch import BlockedURL, Fetcher, FetchError, FetchLimits

NXDOMAIN = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
NODATA = socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")
SERVFAIL = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
EAI_FAIL = socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution")
HANG = object()


class FakeDNS:
    """getaddrinfo that plays `answers` in order (the last one repeats): an exception, HANG, or an IPv4 address."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[str] = []
        self.release = threading.Event()

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if answer is HANG:
            self.release.wait(30)
            raise SERVFAIL
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]


def fetcher(dns: FakeDNS, retries: int = 0, timeout_s: float = 3.0, allow=("127.0.0.0/8",), on_retry=None) -> Fetcher:
    limits = FetchLimits(allow_networks=allow, retries=retries, backoff_ms=1, timeout_s=timeout_s)
    return Fetcher(limits, on_retry=on_retry, getaddrinfo=dns)


def failure(f: Fetcher, url: str = "http://images.shop-cdn.com/a.jpg") -> FetchError:
    with pytest.raises(FetchError) as e:
        f.fetch(url)
    return e.value


@pytest.mark.parametrize("answer", [NXDOMAIN, NODATA], ids=["nxdomain", "nodata"])
def test_a_host_that_does_not_exist_confirmed_once_is_the_sellers(answer):
    dns, retried = FakeDNS(answer), []
    err = failure(fetcher(dns, retries=3, on_retry=retried.append))
    assert not err.transient and not isinstance(err, BlockedURL)
    assert err.code is ReasonCode.FETCH_FAILED and "does not exist" in str(err)
    assert dns.calls == ["images.shop-cdn.com"] * 2, "one lookup plus exactly one confirming re-query"
    assert retried == [], "the seller's problem is not retried"


def test_no_such_host_then_an_answer_is_fetched(small_origin):
    port = small_origin.url.rsplit(":", 1)[1]
    dns = FakeDNS(NXDOMAIN, "127.0.0.1")
    got = fetcher(dns).fetch(f"http://images.shop-cdn.com:{port}/img/a.jpg")
    assert got.data == (small_origin.root / "a.jpg").read_bytes()
    assert len(dns.calls) == 2


def test_no_such_host_then_servfail_on_the_re_query_is_ours():
    dns = FakeDNS(NXDOMAIN, SERVFAIL)
    err = failure(fetcher(dns))
    assert err.transient and len(dns.calls) == 2


def test_no_such_host_without_time_left_to_confirm_is_ours():
    dns = FakeDNS(NXDOMAIN)
    err = failure(fetcher(dns, timeout_s=0.3))  # shorter than the confirming wait
    assert err.transient and "no time left to confirm" in str(err)
    assert len(dns.calls) == 1


@pytest.mark.parametrize("answer", [SERVFAIL, EAI_FAIL, OSError("resolver socket closed")],
                         ids=["eai_again", "eai_fail", "oserror"])
def test_a_resolver_in_trouble_is_ours_and_not_re_queried_as_a_confirmation(answer):
    dns, retried = FakeDNS(answer), []
    err = failure(fetcher(dns, retries=2, on_retry=retried.append))
    assert err.transient and "gave up after 3 attempts" in str(err)
    assert len(dns.calls) == 3 and retried == ["fetch", "fetch"], "one lookup per attempt, each retried"


def test_a_resolver_that_never_answers_is_ours():
    dns = FakeDNS(HANG)
    try:
        err = failure(fetcher(dns, timeout_s=0.5))
    finally:
        dns.release.set()
    assert err.transient and "did not answer in time" in str(err)


@pytest.mark.parametrize("host", ["no-such-host.invalid", "invalid", "shop.test", "cdn.example", "NO-SUCH-HOST.INVALID.",
                                  "abc.onion", "x.alt", "printer.local", "db.internal", "router.home.arpa", "localhost",
                                  "app.localhost"])
def test_special_use_names_are_refused_without_any_lookup(host):
    dns = FakeDNS("93.184.216.34")
    with pytest.raises(BlockedURL, match="special-use name") as e:
        fetcher(dns, allow=()).fetch(f"http://{host}/x.jpg")
    assert not e.value.transient and e.value.code is ReasonCode.FETCH_FAILED
    assert dns.calls == [], "no resolver was asked"


@pytest.mark.parametrize("host", ["no-such-host.invalid", "shop.test", "cdn.example"])
def test_names_that_never_resolve_are_refused_even_with_an_allow_list(host):
    dns = FakeDNS("127.0.0.1")
    with pytest.raises(BlockedURL, match="special-use name"):
        fetcher(dns).fetch(f"http://{host}/x.jpg")
    assert dns.calls == []


def test_localhost_is_looked_up_and_fetched_when_the_allow_list_allows_loopback(small_origin):
    port = small_origin.url.rsplit(":", 1)[1]
    dns = FakeDNS("127.0.0.1")
    got = fetcher(dns).fetch(f"http://localhost:{port}/img/a.jpg")
    assert got.data == (small_origin.root / "a.jpg").read_bytes() and dns.calls == ["localhost"]


def test_localhost_under_an_allow_list_without_loopback_is_still_refused_by_address(small_origin):
    dns = FakeDNS("127.0.0.1")
    with pytest.raises(BlockedURL, match="not public"):
        fetcher(dns, allow=("10.0.0.0/8",)).fetch("http://localhost/x.jpg")
    assert small_origin.hits == {}


def test_literal_loopback_address_under_the_allow_list_keeps_working(small_origin):
    got = Fetcher(FetchLimits(allow_networks=("127.0.0.0/8",), retries=0)).fetch(f"{small_origin.url}/img/a.jpg")
    assert got.data == (small_origin.root / "a.jpg").read_bytes()


def test_names_that_only_end_like_a_special_use_name_are_looked_up():
    dns = FakeDNS(NXDOMAIN)
    for host in ("mytest.com", "invalid-images.com", "example.com", "local.shop.com"):
        failure(fetcher(dns), f"http://{host}/a.jpg")
    assert dns.calls == [h for h in ("mytest.com", "invalid-images.com", "example.com", "local.shop.com")
                                      for _ in range(2)]


def test_confirming_wait_is_bounded_by_the_transfer_deadline():
    """A confirmation never stretches a fetch past its deadline: the re-query runs under the same one."""
    dns = FakeDNS(NXDOMAIN, HANG)  # the hanging re-query would end after 30 s as a SERVFAIL, not a timeout
    try:
        err = failure(fetcher(dns, timeout_s=1.0))
    finally:
        dns.release.set()
    assert err.transient and "did not answer in time" in str(err)
