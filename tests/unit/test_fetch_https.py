"""HTTPS fetches verify the origin's certificate: chain to a trusted CA, validity dates, and the
URL's host name (sent as SNI and checked, although the connection goes to the checked IP address).

Each refusal happens in the TLS handshake, before any request: the origin sees no hit. Today a
refused certificate is classified as ours (transient: retried, then the worker's delayed retry),
never a seller reject: a failing handshake may as well be our CA store or an interception on our
side as the seller's CDN.
"""

from __future__ import annotations

import pytest

from consumer.events import ReasonCode
from consumer.fetch import Fetcher, FetchError, FetchLimits
from tests.https_origin import TestPKI


@pytest.fixture
def pki(small_origin, tmp_path, monkeypatch):
    p = TestPKI(small_origin.root, tmp_path)
    p.trust(monkeypatch)
    yield p
    p.close()


def fetcher() -> Fetcher:
    return Fetcher(FetchLimits(allow_networks=("127.0.0.0/8",), retries=0, backoff_ms=1, timeout_s=5))


def refused(url: str) -> FetchError:
    with pytest.raises(FetchError) as e:
        fetcher().fetch(url)
    assert e.value.transient and e.value.code is ReasonCode.FETCH_FAILED  # ours, retried; not the seller's verdict
    return e.value


def test_https_with_a_valid_certificate_for_the_host_is_fetched(pki):
    o = pki.valid()
    got = fetcher().fetch(f"{o.url}/img/a.jpg")
    assert got.data == (pki.root / "a.jpg").read_bytes()
    assert o.hits == {"/img/a.jpg": 1}


def test_https_certificate_from_an_unknown_ca_is_refused(pki):
    o = pki.unknown_ca()
    err = refused(f"{o.url}/img/a.jpg")
    assert "certificate verify failed" in str(err) and "issuer" in str(err), str(err)
    assert o.hits == {}


def test_https_expired_certificate_is_refused(pki):
    o = pki.expired()
    err = refused(f"{o.url}/img/a.jpg")
    assert "certificate has expired" in str(err), str(err)
    assert o.hits == {}


def test_https_certificate_for_another_host_is_refused(pki):
    """The certificate names 127.0.0.1, the address we connect to, but not the URL's host."""
    o = pki.wrong_host()
    err = refused(f"{o.url}/img/a.jpg")
    # urllib3's own check or OpenSSL's (when urllib3 leaves it to ssl): either names the URL's host
    assert "'localhost'" in str(err) and ("doesn't match" in str(err) or "Hostname mismatch" in str(err)), str(err)
    assert o.hits == {}


def test_without_the_test_ca_the_valid_origin_is_refused(pki, monkeypatch):
    """The trust comes from SSL_CERT_FILE, not from a check that is off: without it the same origin fails."""
    o = pki.valid()
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.root))  # no CA there either
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.root / "a.jpg"))  # not a CA bundle: the system store is not used
    refused(f"{o.url}/img/a.jpg")
    assert o.hits == {}
