"""A local HTTPS origin with a private test CA, made at test time (trustme): certificates a
fetch must accept and ones it must refuse, so a fetcher that stops checking them fails a test.

The fetcher verifies against the system's default CA store, which OpenSSL reads from
`SSL_CERT_FILE` when that is set: a test points it at the test CA (`trust()`), the standard
way to add a CA without a code path that exists only for tests.

The origin picks its certificate by SNI, as a CDN serving many names does: the certificate for
`localhost` only when the client asks for `localhost`, otherwise a default one for other names.
A client that stopped sending the URL's host name (connecting to the checked IP address without
`server_hostname`) gets the default certificate and must refuse it.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
import trustme

from tests.origin import Origin

HOST = "localhost"  # the URL's host: /etc/hosts maps it to 127.0.0.1, and the fetcher connects to that address


def server_context(cert: trustme.LeafCert, *, by_sni: dict[str, trustme.LeafCert] | None = None) -> ssl.SSLContext:
    """Serves `cert`, or the certificate `by_sni` names for the host name the client sent."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    if by_sni:
        named = {}
        for name, leaf in by_sni.items():
            named[name] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf.configure_cert(named[name])

        def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name in named:
                sock.context = named[server_name]

        ctx.sni_callback = pick
    return ctx


class TestPKI:
    """The trusted test CA, a CA nobody trusts, and the origins their certificates make."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, tmp: Path):
        self.root = root
        self.ca = trustme.CA()
        self.stranger = trustme.CA()  # an unknown CA: a self-made or intercepting certificate
        self.ca_file = tmp / "test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        # The default certificate, for clients that send no (or another) host name. It names the
        # loopback address, so a client checking the IP address it connected to would accept it.
        self.other_host = self.ca.issue_cert("images.example.test", "127.0.0.1")
        self._origins: list[Origin] = []

    def trust(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(self.ca_file))

    def origin(self, cert: trustme.LeafCert) -> Origin:
        """An origin that serves `cert` to clients asking for `localhost`, the default certificate otherwise."""
        o = Origin(self.root, tls=server_context(self.other_host, by_sni={HOST: cert}))
        self._origins.append(o)
        return o

    def valid(self) -> Origin:
        return self.origin(self.ca.issue_cert(HOST))  # a DNS name only: no IP address in it

    def unknown_ca(self) -> Origin:
        return self.origin(self.stranger.issue_cert(HOST))

    def expired(self) -> Origin:
        now = dt.datetime.now(dt.timezone.utc)
        return self.origin(self.ca.issue_cert(HOST, not_before=now - dt.timedelta(days=30),
                                              not_after=now - dt.timedelta(days=1)))

    def wrong_host(self) -> Origin:
        """Every client gets the certificate for another name (and for the IP address 127.0.0.1)."""
        o = Origin(self.root, tls=server_context(self.other_host))
        self._origins.append(o)
        return o

    def close(self) -> None:
        for o in self._origins:
            o.close()
