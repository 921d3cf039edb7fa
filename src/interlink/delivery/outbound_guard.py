"""SSRF guard for outbound deliveries.

Endpoint URLs come from tenants, so without a guard a webhook could be pointed at the cloud
metadata service, the database on the private network or the admin port on loopback. Two
layers close that off:

* :func:`check_url` runs before a request and refuses bad schemes, credentials in the URL and
  IP-literal hosts that point somewhere private (aiohttp's ``TCPConnector`` never passes IP
  literals to the resolver, so this is the only place they can be checked).
* :class:`GuardedResolver` is plugged into the ``TCPConnector``; it checks every address a
  host name resolves to and hands aiohttp only the allowed ones, so the socket connects to
  an address that was checked. There is no second lookup for a DNS-rebinding attacker to
  answer differently.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from typing import TypeAlias

import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

__all__ = [
    "ALLOW_SETTING",
    "BlockedDestination",
    "GuardedResolver",
    "OutboundPolicy",
    "check_address",
    "check_url",
    "destination_warning",
]

# The setting that admits a refused network; every refusal of an address names it, so the
# person reading the error knows what to change.
ALLOW_SETTING = "INTERLINK_OUTBOUND_ALLOW_NETWORKS"
_HOW_TO_ALLOW = f"to send there, add its network to {ALLOW_SETTING} (e.g. 127.0.0.0/8)"

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# 64:ff9b::/96 sits inside ::/8, which ipaddress calls reserved, yet it is how IPv6-only
# hosts reach the public IPv4 internet; judge it by the IPv4 address it carries instead.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215 local-use prefix: translates into whatever network the operator chose.
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# After IDNA encoding a real host name has only these characters; anything else ('%', spaces,
# backslashes) is either an attempt to confuse a parser or something getaddrinfo reads oddly.
# IANA special-purpose blocks that are not globally reachable but that older Python releases
# still call global, so the verdict does not depend on the interpreter's patch level.
_SPECIAL_PURPOSE: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.IPv4Network("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 SIDs
)
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")


class BlockedDestination(Exception):
    """The destination of a delivery is refused by the outbound policy."""


@functools.lru_cache(maxsize=64)
def _compile_networks(allow_networks: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # strict=False: "10.1.2.3/8" is an easy slip for "10.0.0.0/8", not worth refusing to start.
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in allow_networks)


class OutboundPolicy(msgspec.Struct, frozen=True):
    """Where deliveries may go.

    ``allow_networks`` lists CIDRs admitted even though they are not globally routable, e.g.
    ``("127.0.0.0/8", "::1/128")`` for tests and demos, or a private range for a deployment
    whose receivers live next to it.
    """

    allow_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A typo in the allow-list must fail at startup, not on the first delivery.
        _compile_networks(self.allow_networks)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return _compile_networks(self.allow_networks)

    def allows(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _parse(ip: str) -> IPAddress:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # The zone only picks an interface; the address alone decides where packets go, so
        # judge it without the zone (a scoped address does not even equal its plain form).
        return ipaddress.IPv6Address(int(address))
    return address


def _plain_reason(address: IPAddress) -> str | None:
    """Why an address on its own (no embedded IPv4) is refused, or None if it is public."""
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if address == _BROADCAST:
            return "broadcast address"
        if address in _CGNAT:
            return "shared address space (carrier-grade NAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local address"
    if address.is_private:
        return "private address"
    if any(address in network for network in _SPECIAL_PURPOSE):
        return "special-purpose address"
    if address.is_reserved:
        return "reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _refusal_reason(address: IPAddress, policy: OutboundPolicy) -> str | None:
    if policy.allows(address):
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return _plain_reason(address)

    mapped = address.ipv4_mapped
    if mapped is not None:
        # The kernel connects an IPv4-mapped address to the IPv4 host itself, so the
        # allow-list applies to the IPv4 form too.
        if policy.allows(mapped):
            return None
        reason = _plain_reason(mapped)
        return f"{reason} (IPv4-mapped {mapped})" if reason else None

    if address in _NAT64_WELL_KNOWN:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        reason = _plain_reason(embedded)
        return f"{reason} (NAT64 of {embedded})" if reason else None
    if address in _NAT64_LOCAL_USE:
        return "local-use NAT64 address"

    sixtofour = address.sixtofour
    if sixtofour is not None:
        reason = _plain_reason(sixtofour)
        if reason:
            return f"{reason} (6to4 of {sixtofour})"

    return _plain_reason(address)


def check_address(ip: str, policy: OutboundPolicy) -> None:
    """Refuse an address that is not globally routable unless the policy allows it.

    Raises :class:`BlockedDestination` for a refused address and ``ValueError`` for a string
    that is not an IP address at all.
    """
    reason = _refusal_reason(_parse(ip), policy)
    if reason is not None:
        raise BlockedDestination(f"destination {ip} is not allowed: {reason}; {_HOW_TO_ALLOW}")


def check_url(url: str | URL, policy: OutboundPolicy) -> None:
    """Refuse a URL that must not be sent to, before any connection is attempted.

    Host names are left to :class:`GuardedResolver`; only IP literals are checked here.
    Raises :class:`BlockedDestination`.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        scheme = parsed.scheme.lower()
        raw_host = parsed.raw_host
        host = parsed.host
        has_userinfo = parsed.raw_user is not None or parsed.raw_password is not None
    except (ValueError, TypeError) as exc:
        raise BlockedDestination(f"URL is not valid: {exc}") from None

    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "(none)"
        raise BlockedDestination(f"scheme {shown!r} is not allowed: use http or https")
    if not raw_host or not host:
        raise BlockedDestination("URL has no host")
    if has_userinfo:
        # Credentials in the URL would be sent as Basic auth; and "user@host" is a classic
        # way to make a URL look like it goes somewhere it does not.
        raise BlockedDestination("URL must not contain a user name or password")

    # aiohttp connects using raw_host; the decoded host is what a person reads. Both must pass.
    if host != raw_host:
        _check_ip_literal(host, policy)
    if not _check_ip_literal(raw_host, policy):
        _check_host_name(raw_host)


def _check_ip_literal(host: str, policy: OutboundPolicy) -> bool:
    """Check ``host`` if it is an IP address; return whether it was one."""
    try:
        address = _parse(host)
    except ValueError:
        pass
    else:
        reason = _refusal_reason(address, policy)
        if reason is not None:
            raise BlockedDestination(
                f"destination {host} is not allowed: {reason}; {_HOW_TO_ALLOW}"
            )
        return True
    return False


def _check_host_name(host: str) -> None:
    if ":" in host:
        # aiohttp treats any host with a colon as an IP literal and skips the resolver.
        raise BlockedDestination(f"host {host!r} is not allowed: not a valid IPv6 address")
    if _DIGITS_AND_DOTS.fullmatch(host):
        # Legacy numeric forms ("2130706433", "127.1", "0177.0.0.1") that socket maps onto an
        # address. Some aiohttp versions treat them as IP literals and skip the resolver.
        raise BlockedDestination(f"host {host!r} is not allowed: non-canonical IPv4 address")
    if not _HOSTNAME.fullmatch(host):
        raise BlockedDestination(f"host {host!r} is not allowed: not a valid host name")


class GuardedResolver(AbstractResolver):
    """Resolves with an inner resolver, then keeps only addresses the policy allows.

    If nothing is left, :class:`BlockedDestination` is raised. It is deliberately not an
    ``OSError``: aiohttp wraps resolver ``OSError`` s into ``ClientConnectorDNSError`` and keeps
    only errno/strerror, which would lose the message; other exceptions propagate unchanged out
    of ``ClientSession.request``.
    """

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            # ThreadedResolver binds to the running loop, so it cannot be built in __init__.
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if not results:
            # An empty list makes aiohttp fail on an assertion; report it as a lookup failure.
            raise socket.gaierror(socket.EAI_NONAME, f"no addresses found for {host}")

        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            address = result["host"]
            try:
                reason = _refusal_reason(_parse(address), self._policy)
            except ValueError:
                reason = "not an IP address"
            if reason is None:
                kept.append(result)
            else:
                refused.append(f"{address} ({reason})")
        if kept:
            return kept
        detail = ", ".join(dict.fromkeys(refused))
        raise BlockedDestination(
            f"destination {host} is not allowed: it resolves to {detail}; {_HOW_TO_ALLOW}"
        )

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


async def destination_warning(
    url: str, policy: OutboundPolicy, *, timeout_seconds: float = 2.0
) -> str | None:
    """What deliveries to ``url`` will meet, said when the endpoint is created or changed.

    A host name whose every address the policy refuses is accepted (DNS may change before the
    first delivery, and the operator may be about to widen the policy), but the answer says
    now that deliveries will fail, rather than the dead-letter queue saying so hours later.
    IP literals never get here: :func:`check_url` refuses them outright.
    """
    host = URL(url).raw_host
    if not host:
        return None
    try:
        _parse(host)
    except ValueError:
        pass
    else:
        return None  # an IP literal, judged by check_url
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_seconds):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return f"host {host} does not resolve now: deliveries will fail until it does"
    refused: list[str] = []
    for info in infos:
        address = str(info[4][0])
        try:
            reason = _refusal_reason(_parse(address), policy)
        except ValueError:
            reason = "not an IP address"
        if reason is None:
            return None
        refused.append(f"{address} ({reason})")
    detail = ", ".join(dict.fromkeys(refused))
    return f"every delivery to {host} will be refused: it resolves to {detail}; {_HOW_TO_ALLOW}"
