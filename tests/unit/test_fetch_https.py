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


# --- whose problem, one step up: the worker's fetch step ------------------------------------------


def fetch_step_outcome(url: str):
    """What the worker's fetch step makes of `url`: the item, or the `Transient` it raised."""
    from consumer.retry import Transient
    from consumer.steps.fetch import Fetch
    from consumer.work import Source, WorkItem
    from producer_tools.publish import make_event

    item = WorkItem(Source("image_uploaded", 0, 0, 1, None, None), event=make_event(url))
    try:
        Fetch(fetcher())(item)
    except Transient as e:
        return e
    return item


def test_the_fetch_step_passes_a_valid_certificates_bytes_on(pki):
    o = pki.valid()
    item = fetch_step_outcome(f"{o.url}/img/a.jpg")
    assert item.data == (pki.root / "a.jpg").read_bytes() and item.rejection is None


@pytest.mark.parametrize("bad", ["unknown_ca", "expired", "wrong_host"])
def test_the_fetch_step_makes_a_refused_certificate_our_transient_trouble_never_a_reject(pki, bad):
    """`Transient` is the worker's delayed-retry path (consumer/retry.py): retried after
    IMAGEGATE_RETRY_DELAYS_S, then dead-lettered; no verdict reaches the seller."""
    from consumer.retry import Transient

    o = getattr(pki, bad)()
    out = fetch_step_outcome(f"{o.url}/img/a.jpg")
    assert isinstance(out, Transient) and out.stage == "fetch", out
    assert "certificate" in str(out).lower() or "hostname" in str(out).lower(), str(out)
    assert o.hits == {}


# --- no setting turns verification off -----------------------------------------------------------

VERIFY_LIKE = ("verify", "insecure", "ssl", "tls", "cert", "hostname", "ca_")
# names an operator might try; none exists, and the worker ignores unknown IMAGEGATE_* variables
TRIED = {f"IMAGEGATE_{n}": "false" for n in ("VERIFY", "SSL_VERIFY", "TLS_VERIFY", "FETCH_VERIFY", "FETCH_SSL_VERIFY",
                                             "FETCH_TLS_VERIFY", "VERIFY_CERTIFICATES", "CHECK_HOSTNAME")}
TRIED |= {f"IMAGEGATE_{n}": "true" for n in ("INSECURE", "FETCH_INSECURE", "INSECURE_SKIP_VERIFY", "SSL_NO_VERIFY")}
TRIED |= {"PYTHONHTTPSVERIFY": "0", "CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": ""}  # other clients' switches


def test_no_setting_is_named_like_a_tls_switch():
    from consumer.config import Settings

    assert [f for f in Settings.model_fields if any(w in f.lower() for w in VERIFY_LIKE)] == []


def test_no_imagegate_setting_disables_certificate_verification(pki, monkeypatch):
    """The worker's own fetcher (consumer/pipeline.py build_fetcher), from settings with every boolean
    setting flipped and every verify-like variable an operator might try set: certificates from an
    unknown CA and for another host are still refused, and the connection it keeps requires a
    certificate and checks the URL's host (urllib3 matches the name itself: it connects to the
    checked IP address, so `ssl`'s own check_hostname is off and `assert_hostname` carries the name)."""
    import ssl

    from urllib3.connection import HTTPSConnection

    from consumer.config import Settings, load_settings
    from consumer.pipeline import build_fetcher

    flipped = {f"IMAGEGATE_{name.upper()}": str(not info.default).lower()
               for name, info in Settings.model_fields.items() if info.annotation is bool}
    assert flipped, "no boolean settings found: the scan would prove nothing"
    for k, v in {**flipped, **TRIED, "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_FETCH_RETRIES": "0",
                 "IMAGEGATE_FETCH_TIMEOUT_S": "5"}.items():
        monkeypatch.setenv(k, v)
    settings = load_settings()
    assert all(getattr(settings, k.removeprefix("IMAGEGATE_").lower()) == (v == "true") for k, v in flipped.items())
    f = build_fetcher(settings)
    for bad in (pki.unknown_ca(), pki.wrong_host()):
        with pytest.raises(FetchError) as e:
            f.fetch(f"{bad.url}/img/a.jpg")
        assert e.value.transient and bad.hits == {}, str(e.value)
    connected = []
    real_connect = HTTPSConnection.connect

    def connect(self):  # the connection as the fetcher made it, seen once its handshake passed
        real_connect(self)
        connected.append((self.sock.context.verify_mode, self.assert_hostname, self.assert_fingerprint))

    monkeypatch.setattr(HTTPSConnection, "connect", connect)
    o = pki.valid()
    assert f.fetch(f"{o.url}/img/a.jpg").data == (pki.root / "a.jpg").read_bytes()
    assert connected == [(ssl.CERT_REQUIRED, "localhost", None)]
