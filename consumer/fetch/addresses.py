"""Which addresses a seller's URL may reach: public ones, plus what an explicit allow-list exempts.

Every address a name resolves to must pass, since an attacker controls which one a later
lookup would return; IPv6 forms that carry an IPv4 address are judged by that address.
"""

from __future__ import annotations

import ipaddress

from consumer.fetch.errors import BlockedURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the low 32 bits are an IPv4 address


class AddressPolicy:
    def __init__(self, allow_networks: tuple[str, ...] = ()):
        self.allow = [ipaddress.ip_network(c, strict=False) for c in allow_networks]

    def allowed(self, ip: IPAddress) -> bool:
        """Exempted by the allow-list (the local stack and tests allow loopback this way)."""
        return any(ip in net for net in self.allow)

    def check(self, ip: IPAddress) -> None:
        if self.allowed(ip):
            return
        if isinstance(ip, ipaddress.IPv6Address):
            # IPv6 forms that carry an IPv4 address reach that address: judge the IPv4 one too.
            embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
            if embedded is not None:
                self.check(embedded)  # the wrapper is only a route to this IPv4 address
                return
        if ip in _METADATA:
            raise BlockedURL(f"address {ip} is a cloud metadata endpoint")
        site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10: deprecated, still routed inside sites
        if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
                or site_local or not ip.is_global):  # not is_global also catches 100.64.0.0/10 (carrier-grade NAT) and the like
            raise BlockedURL(f"address {ip} is not public (private, loopback, link-local, multicast or reserved)")
