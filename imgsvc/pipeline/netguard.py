"""Which addresses outbound requests may reach, enforced on the address actually connected to.

Image fetches and webhooks take URLs from strangers. A URL's host name may resolve to an
internal address, or resolve differently the second time (DNS rebinding), so the policy is
checked where the socket is made: the resolver drops refused addresses, and the socket
factory refuses to create a socket for one (IP literals never pass through the resolver).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# One part of an IPv4 host as browsers read it (WHATWG URL): hex, octal or decimal.
_IPV4_PART = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]*)|0(?P<oct>[0-7]+)|(?P<dec>[1-9][0-9]*|0)")


class BlockedAddressError(OSError):
    """A connection to an address the policy refuses."""

    def __init__(self, address: str, reason: str, message: str | None = None) -> None:
        default = f"{address} is {_article(reason)} {reason} address"
        super().__init__(message or f"{default}, which imgsvc does not connect to")
        self.address = address
        self.reason = reason


def refusal_reason(ip: IPAddress) -> str | None:
    """Why an address is not a public one, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return f"{inner} (embedded in IPv6)" if inner else None
        if ip.teredo:
            return "Teredo"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip in CGNAT, "shared (CGNAT)"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "special-purpose"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in NAT64) or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a browser reads in an all-numeric host, in any spelling it accepts
    (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`); None when the host is not one."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot names the same host
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        match = _IPV4_PART.fullmatch(part)
        if match is None:
            return None
        digits, base = next((match[g], b) for g, b in (("hex", 16), ("oct", 8), ("dec", 10))
                            if match[g] is not None)  # fmt: skip
        numbers.append(int(digits or "0", base))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    return ipaddress.IPv4Address(sum(n << 8 * (3 - i) for i, n in enumerate(head)) + last)


def refuse_numeric_spelling(host: str) -> None:
    """Raise BlockedAddressError for an IPv4 address written other than as a dotted quad.

    Such spellings have no use but slipping past address filters, so they are refused
    whatever address they spell, consistently as `blocked_address`.
    """
    ip = numeric_ipv4(host)
    if ip is not None and str(ip) != host.removesuffix("."):
        raise BlockedAddressError(
            host,
            "non-standard",
            f"{host} is the IPv4 address {ip} written in a non-standard numeric form, "
            "which imgsvc does not connect to; write it as a dotted quad",
        )


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses only, unless private ones are allowed wholesale or by network."""

    allow_private: bool = False
    allow_networks: tuple[Network, ...] = ()

    def check(self, address: str) -> None:
        """Raise BlockedAddressError unless `address` (an IP literal) may be connected to."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise BlockedAddressError(address, "malformed") from None
        if self.allow_private or any(ip in net for net in self.allow_networks):
            return
        reason = refusal_reason(ip)
        if reason is not None:
            raise BlockedAddressError(address, reason)

    def allows(self, address: str) -> bool:
        try:
            self.check(address)
        except BlockedAddressError:
            return False
        return True


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver and drops every address the policy refuses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.allows(r["host"])]
        if not allowed:
            self._policy.check(results[0]["host"])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_connector(policy: AddressPolicy, limit: int) -> aiohttp.TCPConnector:
    """A connector whose every socket goes to an address the policy allows."""

    def socket_factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        policy.check(sockaddr[0])
        return socket.socket(family=family, type=type_, proto=proto)

    return aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        socket_factory=socket_factory,
        limit=limit,
        ttl_dns_cache=60,
    )


def blocked_cause(exc: BaseException) -> BlockedAddressError | None:
    """The BlockedAddressError behind an aiohttp connection error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlockedAddressError):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
