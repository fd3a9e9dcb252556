import ipaddress

import pytest

from consumer.events import ReasonCode
from consumer.fetch import BlockedURL, Fetcher, FetchError, FetchLimits

LOOPBACK = ("127.0.0.0/8",)


def fetcher(**kw) -> Fetcher:
    base = dict(allow_networks=LOOPBACK, retries=2, backoff_ms=1, timeout_s=3)
    base.update(kw)
    return Fetcher(FetchLimits(**base))


def test_fetches_image_bytes(small_origin):
    got = fetcher().fetch(f"{small_origin.url}/img/a.jpg")
    assert got.data == (small_origin.root / "a.jpg").read_bytes() and got.attempts == 1


def test_loopback_is_refused_by_default(small_origin):
    with pytest.raises(BlockedURL, match="not public"):
        Fetcher(FetchLimits()).fetch(f"{small_origin.url}/img/a.jpg")
    assert small_origin.hits == {}  # refused before any connection


@pytest.mark.parametrize("ip", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0"])
def test_non_public_addresses_are_refused(ip):
    with pytest.raises(BlockedURL):
        Fetcher(FetchLimits()).check_address(ipaddress.ip_address(ip))


def test_public_address_passes_the_guard():
    Fetcher(FetchLimits()).check_address(ipaddress.ip_address("93.184.216.34"))


def test_redirect_is_rechecked_at_every_hop(small_origin):
    # Allowed small_origin redirects to a private address: the second hop must be refused.
    with pytest.raises(BlockedURL, match="10.0.0.1"):
        fetcher().fetch(f"{small_origin.url}/redirect?to=http://10.0.0.1/x.jpg")
    ok = fetcher().fetch(f"{small_origin.url}/redirect?to={small_origin.url}/img/a.jpg")
    assert ok.url.endswith("/img/a.jpg")


def test_redirect_count_is_bounded(small_origin):
    loop = f"{small_origin.url}/redirect?to={small_origin.url}/redirect?to={small_origin.url}/img/a.jpg"
    with pytest.raises(FetchError, match="redirects"):
        fetcher(max_redirects=1).fetch(loop)


def test_bad_scheme_refused():
    with pytest.raises(BlockedURL, match="scheme 'gopher'"):
        fetcher().fetch("gopher://x/y")


def test_404_is_permanent_and_not_retried(small_origin):
    with pytest.raises(FetchError) as e:
        fetcher().fetch(f"{small_origin.url}/status/404")
    assert not e.value.transient and small_origin.hits["/status/404"] == 1


def test_5xx_is_retried_then_recovers(small_origin):
    got = fetcher(retries=3).fetch(f"{small_origin.url}/flaky/2/a.jpg")
    assert got.attempts == 3


def test_5xx_gives_up_after_configured_retries(small_origin):
    with pytest.raises(FetchError, match="gave up after 3 attempts"):
        fetcher(retries=2).fetch(f"{small_origin.url}/status/503")
    assert small_origin.hits["/status/503"] == 3


def test_connection_refused_is_transient():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(FetchError) as e:
        fetcher(retries=1).fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert e.value.transient and "gave up after 2 attempts" in str(e.value)


def test_size_limit(small_origin):
    with pytest.raises(FetchError) as e:
        fetcher(max_bytes=100_000).fetch(f"{small_origin.url}/img/big.bin")
    assert e.value.code is ReasonCode.TOO_LARGE


def test_trickling_origin_hits_the_whole_transfer_deadline(small_origin):
    with pytest.raises(FetchError, match="longer than"):
        fetcher(timeout_s=0.5, retries=0).fetch(f"{small_origin.url}/slow/a.jpg")


def test_file_urls_confined_to_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    (root / "link.jpg").symlink_to(tmp_path / "secret.txt")
    f = fetcher(allowed_schemes=("file",), file_root=root)
    assert f.fetch(f"file://{root}/ok.jpg").data == b"x"
    for bad in (f"file://{root}/../secret.txt", f"file://{root}/link.jpg", "file:///etc/passwd"):
        with pytest.raises(BlockedURL, match="outside the allowed root"):
            f.fetch(bad)
    with pytest.raises(BlockedURL, match="not enabled"):
        fetcher(allowed_schemes=("file",)).fetch(f"file://{root}/ok.jpg")
