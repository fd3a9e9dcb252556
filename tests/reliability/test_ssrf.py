"""SSRF guard, attacked: every way of spelling an internal address, every way out of file_root.

These tests run the real Fetcher against a real local small_origin (tests/small_origin.py). Loopback is
refused by default; the tests that need their own small_origin allow 127.0.0.0/8 explicitly, and
`test_default_guard_refuses_every_loopback_spelling` proves the default refuses it.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from consumer.events import ReasonCode
from consumer.fetch import MAX_URL_LENGTH, BlockedURL, Fetcher, FetchError, FetchLimits

LOOPBACK = ("127.0.0.0/8",)


def default() -> Fetcher:
    return Fetcher(FetchLimits(retries=0, timeout_s=2))


def allowing_loopback(**kw) -> Fetcher:
    base = dict(allow_networks=LOOPBACK, retries=0, backoff_ms=1, timeout_s=3)
    base.update(kw)
    return Fetcher(FetchLimits(**base))


def port_of(small_origin: Origin) -> int:
    return small_origin.server.server_address[1]


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "2130706433", "0x7f.1", "0x7f000001", "017700000001", "0177.0.0.1",
    "localhost", "LOCALHOST", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
])
def test_default_guard_refuses_every_loopback_spelling(small_origin, host):
    """Decimal, hex, octal, short and IPv4-mapped forms all resolve to 127.0.0.1 and are refused
    before any connection is made (the small_origin sees no request)."""
    with pytest.raises(BlockedURL, match="not public"):
        default().fetch(f"http://{host}:{port_of(small_origin)}/img/a.jpg")
    assert small_origin.hits == {}


def test_the_same_urls_fetch_when_loopback_is_explicitly_allowed(small_origin):
    for host in ("127.0.0.1", "2130706433", "0x7f.1", "localhost"):
        assert allowing_loopback().fetch(f"http://{host}:{port_of(small_origin)}/img/a.jpg").data[:2] == b"\xff\xd8"


@pytest.mark.parametrize("ip", [
    "::1", "::", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
    "2002:a9fe:a9fe::", "fd00:ec2::254", "fc00::1", "fe80::1", "ff02::1", "2001:db8::1", "2001::1",
    "100.64.0.1", "100.100.100.200", "169.254.169.254", "0.1.2.3", "198.18.0.1", "192.0.0.1", "240.0.0.1",
    "255.255.255.255", "192.0.2.1",
])
def test_non_global_addresses_and_ipv6_wrappings_of_them_are_refused(ip):
    with pytest.raises(BlockedURL):
        default().check_address(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822", "::ffff:93.184.216.34"])
def test_public_addresses_pass(ip):
    default().check_address(ipaddress.ip_address(ip))


def test_ipv6_loopback_literal_is_refused():
    with pytest.raises(BlockedURL, match="not public"):
        default().fetch("http://[::1]:9/x.jpg")


def test_dns_name_resolving_to_a_private_address_is_refused(monkeypatch):
    """A public-looking name whose DNS answer contains a private address is refused, even when
    another answer is public (the attacker chooses which one a later lookup would return)."""
    real = socket.getaddrinfo

    def fake(host, port, *a, **kw):
        if host == "images.attacker-example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]
        return real(host, port, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(BlockedURL, match="10.0.0.5"):
        default().fetch("http://images.attacker-example.com/x.jpg")


def test_userinfo_tricks_are_refused(small_origin):
    p = port_of(small_origin)
    for url in (f"http://public.example.com@127.0.0.1:{p}/img/a.jpg", f"http://user:pw@127.0.0.1:{p}/img/a.jpg",
                f"http://127.0.0.1:{p}\\@public.example.com/img/a.jpg"):
        with pytest.raises(BlockedURL, match="userinfo"):
            allowing_loopback().fetch(url)  # refused even where loopback is allowed
    assert small_origin.hits == {}


def test_over_long_url_is_refused(small_origin):
    url = f"{small_origin.url}/img/a.jpg?" + "x" * MAX_URL_LENGTH
    with pytest.raises(BlockedURL, match="characters"):
        allowing_loopback().fetch(url)
    assert small_origin.hits == {}


def test_redirect_to_private_address_is_refused_at_the_hop(small_origin):
    for target in ("http://10.0.0.1/x.jpg", "http://169.254.169.254/latest/meta-data/", "http://[::1]/x",
                   "http://2130706434/x"):  # 127.0.0.2: outside the /32 allowed here
        with pytest.raises(BlockedURL):
            Fetcher(FetchLimits(allow_networks=(f"127.0.0.1/32",), retries=0)).fetch(
                f"{small_origin.url}/redirect?to={target}")


def test_redirect_to_file_url_is_refused_even_when_file_is_allowed(small_origin):
    root = small_origin.root
    f = allowing_loopback(allowed_schemes=("http", "https", "file"), file_root=root)
    assert f.fetch(f"file://{root}/a.jpg").data[:2] == b"\xff\xd8"  # direct file:// is fine
    with pytest.raises(BlockedURL, match="redirect to a file"):
        f.fetch(f"{small_origin.url}/redirect?to=file://{root}/a.jpg")


def test_redirect_to_disallowed_scheme_is_refused(small_origin):
    for target in ("gopher://127.0.0.1:70/x", "ftp://127.0.0.1/x", "file:///etc/passwd"):
        with pytest.raises(BlockedURL):
            allowing_loopback().fetch(f"{small_origin.url}/redirect?to={target}")


def test_redirect_chain_is_bounded(small_origin):
    u = f"{small_origin.url}/img/a.jpg"
    for _ in range(4):
        u = f"{small_origin.url}/redirect?to={u}"
    with pytest.raises(FetchError, match="more than 3 redirects"):
        allowing_loopback(max_redirects=3).fetch(u)
    assert allowing_loopback(max_redirects=4).fetch(u).url.endswith("/img/a.jpg")


def test_response_size_bounded_with_and_without_content_length(small_origin):
    with pytest.raises(FetchError) as e:
        allowing_loopback(max_bytes=100_000).fetch(f"{small_origin.url}/img/big.bin")
    assert e.value.code is ReasonCode.TOO_LARGE
    with pytest.raises(FetchError) as e:  # no Content-Length: counted as it streams
        allowing_loopback(max_bytes=100_000).fetch(f"{small_origin.url}/chunked/big.bin")
    assert e.value.code is ReasonCode.TOO_LARGE


def test_gzip_body_is_never_inflated(small_origin):
    """A 'gzip bomb' (small on the wire, huge inflated) is returned as the raw bytes it is."""
    got = allowing_loopback(max_bytes=1 << 20).fetch(f"{small_origin.url}/gzipbomb")
    assert len(got.data) < (1 << 20) and got.data[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("bad", ["gopher://x/y", "ftp://x/y", "dict://127.0.0.1:11211/", "s3://bucket/k",
                                 "javascript:alert(1)", "data:image/png;base64,AAAA", "//no-scheme/x", "x"])
def test_bad_schemes_are_refused(bad):
    with pytest.raises(BlockedURL, match="scheme"):
        default().fetch(bad)


def test_url_without_host_or_with_bad_port_is_refused():
    for url in ("http:///x.jpg", "http://h:99999/x", "http://h:port/x", "http://[::1/x"):
        with pytest.raises(BlockedURL):
            default().fetch(url)


# -- file:// confinement ---------------------------------------------------------------

@pytest.fixture
def file_root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.jpg").write_bytes(b"ok")
    (root / "sub" / "deep.jpg").write_bytes(b"deep")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "rootx").mkdir()  # sibling whose name starts with the root's name
    (tmp_path / "rootx" / "s.jpg").write_bytes(b"sibling")
    (root / "link.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "dirlink").symlink_to(tmp_path)
    (root / "inner.jpg").symlink_to(root / "ok.jpg")  # a symlink that stays inside is fine
    os.mkfifo(root / "fifo.jpg")
    return root


def files(root, **kw) -> Fetcher:
    return Fetcher(FetchLimits(allowed_schemes=("file",), file_root=root, retries=0, **kw))


def test_file_inside_root_is_read(file_root):
    f = files(file_root)
    assert f.fetch(f"file://{file_root}/ok.jpg").data == b"ok"
    assert f.fetch(f"file://{file_root}/sub/deep.jpg").data == b"deep"
    assert f.fetch(f"file://{file_root}/sub/../ok.jpg").data == b"ok"
    assert f.fetch(f"file://{file_root}/inner.jpg").data == b"ok"
    assert f.fetch(f"file://localhost{file_root}/ok.jpg").data == b"ok"


@pytest.mark.parametrize("path", [
    "{root}/../secret.txt", "{root}/sub/../../secret.txt", "{root}/%2e%2e/secret.txt", "{root}/%2E%2E%2Fsecret.txt",
    "{root}/..%2fsecret.txt", "{root}/link.jpg", "{root}/dirlink/secret.txt", "/etc/passwd", "{root}x/s.jpg",
    "{root}/../rootx/s.jpg",
])
def test_file_escapes_are_refused(file_root, path):
    with pytest.raises(BlockedURL, match="outside the allowed root"):
        files(file_root).fetch("file://" + path.format(root=file_root))


def test_file_url_with_a_remote_host_or_nul_is_refused(file_root):
    with pytest.raises(BlockedURL, match="names a host"):
        files(file_root).fetch(f"file://evil.example{file_root}/ok.jpg")
    with pytest.raises(BlockedURL, match="NUL"):
        files(file_root).fetch(f"file://{file_root}/ok.jpg%00.png")


def test_file_that_is_not_regular_or_too_big_is_a_fetch_failure(file_root):
    with pytest.raises(FetchError, match="not a regular file") as e:
        files(file_root).fetch(f"file://{file_root}/fifo.jpg")  # must not block on the FIFO
    assert not isinstance(e.value, BlockedURL)
    with pytest.raises(FetchError, match="not a regular file"):
        files(file_root).fetch(f"file://{file_root}/sub")
    with pytest.raises(FetchError) as e:
        files(file_root, max_bytes=1).fetch(f"file://{file_root}/ok.jpg")
    assert e.value.code is ReasonCode.TOO_LARGE
    with pytest.raises(FetchError, match="not found"):
        files(file_root).fetch(f"file://{file_root}/missing.jpg")


def test_file_scheme_is_off_unless_allowed(file_root):
    with pytest.raises(BlockedURL, match="scheme 'file'"):
        default().fetch(f"file://{file_root}/ok.jpg")
    with pytest.raises(BlockedURL, match="not enabled"):
        Fetcher(FetchLimits(allowed_schemes=("file",))).fetch(f"file://{file_root}/ok.jpg")
