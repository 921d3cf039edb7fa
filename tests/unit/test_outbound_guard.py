"""The SSRF guard, without any network: addresses, URLs and the resolver filter."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path

import msgspec
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from interlink.delivery.outbound_guard import (
    ALLOW_SETTING,
    BlockedDestination,
    GuardedResolver,
    OutboundPolicy,
    check_address,
    check_url,
    destination_warning,
)

NO_EXCEPTIONS = OutboundPolicy()
LOOPBACK_ALLOWED = OutboundPolicy(allow_networks=("127.0.0.0/8", "::1/128"))

HOSTILE_ADDRESSES = [
    # RFC 1918 private ranges, both ends.
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.255",
    # Loopback, unspecified, "this network".
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    # Link-local, including the cloud metadata service.
    "169.254.169.254",
    "169.254.0.1",
    # Carrier-grade NAT shared space.
    "100.64.0.1",
    "100.127.255.254",
    # Multicast, broadcast, reserved, documentation, benchmarking, IETF protocol space.
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "192.0.0.8",
    "192.88.99.1",
    # IPv6 loopback, unspecified, link-local (with and without a zone), ULA, multicast.
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456:789a::1",
    "ff02::1",
    "fec0::1",
    "2001:db8::1",
    "100::1",
    "2001::1",
    "3fff::1",
    "5f00::1",
    # IPv4 smuggled inside IPv6.
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:7f00:1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a00:1",
    "2002:7f00:1::1",
    "2002:a00:1::",
]

HOSTILE_URLS = [
    "file:///etc/passwd",
    "ftp://example.com/",
    "gopher://example.com:70/_stats",
    "javascript:alert(1)",
    "data:text/plain,hello",
    "dict://example.com:11211/",
    "ws://example.com/socket",
    "example.com/no-scheme",
    "http://user:pass@example.com/",
    "http://user@example.com/",
    "https://:secret@example.com/",
    "http:///no-host",
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "https://10.0.0.5/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8000/",
    "http://[::1]/",
    "http://[::]:80/",
    "http://[fe80::1%25eth0]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:10.0.0.1]:9200/",
    "http://[64:ff9b::7f00:1]/",
    "http://[fd00::1]/",
    # Legacy numeric IPv4 forms that getaddrinfo maps onto loopback.
    "http://2130706433/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    # Parser confusion.
    "http://%31%32%37.0.0.1/",
    "http://127.0.0.1\\@example.com/",
]

PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:2800:220:1::",
    "2001:4860:4860::8888",
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    "::ffff:93.184.216.34",
]

PUBLIC_URLS = [
    "https://example.com/hooks/1",
    "HTTPS://Example.COM/",
    "http://93.184.216.34:8080/x?y=1",
    "https://[2606:2800:220:1::]/",
    "https://βόλοσ.example/",
    "https://example.com./",
    # Host names that only resolve to somewhere private are the resolver's job.
    "http://localhost:8080/",
    "http://0x7f000001/",
]


def test_corpus_is_large_enough() -> None:
    assert len(HOSTILE_ADDRESSES) + len(HOSTILE_URLS) >= 40


@pytest.mark.parametrize("ip", HOSTILE_ADDRESSES)
def test_hostile_addresses_are_refused(ip: str) -> None:
    with pytest.raises(BlockedDestination, match="is not allowed"):
        check_address(ip, NO_EXCEPTIONS)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_are_refused(url: str) -> None:
    with pytest.raises(BlockedDestination):
        check_url(url, NO_EXCEPTIONS)


@pytest.mark.parametrize("ip", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(ip: str) -> None:
    check_address(ip, NO_EXCEPTIONS)


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_public_urls_are_allowed(url: str) -> None:
    check_url(url, NO_EXCEPTIONS)


@pytest.mark.parametrize(
    ("ip", "message"),
    [
        ("10.0.0.5", "destination 10.0.0.5 is not allowed: private address"),
        ("127.0.0.1", "destination 127.0.0.1 is not allowed: loopback address"),
        ("169.254.169.254", "destination 169.254.169.254 is not allowed: link-local address"),
        ("100.64.0.1", "destination 100.64.0.1 is not allowed: shared address space"),
        (
            "::ffff:127.0.0.1",
            "destination ::ffff:127.0.0.1 is not allowed: loopback address (IPv4-mapped 127.0.0.1)",
        ),
        (
            "64:ff9b::7f00:1",
            "destination 64:ff9b::7f00:1 is not allowed: loopback address (NAT64 of 127.0.0.1)",
        ),
    ],
)
def test_refusals_say_why(ip: str, message: str) -> None:
    with pytest.raises(BlockedDestination) as info:
        check_address(ip, NO_EXCEPTIONS)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme 'ftp' is not allowed: use http or https"),
        ("http://u:p@example.com/", "URL must not contain a user name or password"),
        ("http://[::1]:8080/", "destination ::1 is not allowed: loopback address"),
        ("http://127.1/", "host '127.1' is not allowed: non-canonical IPv4 address"),
    ],
)
def test_url_refusals_say_why(url: str, message: str) -> None:
    with pytest.raises(BlockedDestination) as info:
        check_url(url, NO_EXCEPTIONS)
    assert str(info.value).split("; to send there")[0] == message


def test_userinfo_message_does_not_echo_the_password() -> None:
    with pytest.raises(BlockedDestination) as info:
        check_url("https://alice:hunter2@example.com/", NO_EXCEPTIONS)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "127.255.255.254", "::ffff:127.0.0.1", "::1", "::ffff:7f00:1"]
)
def test_allow_list_admits_configured_networks(ip: str) -> None:
    check_address(ip, LOOPBACK_ALLOWED)


@pytest.mark.parametrize("ip", ["10.0.0.5", "169.254.169.254", "::2", "fe80::1", "0.0.0.0"])
def test_allow_list_admits_nothing_else(ip: str) -> None:
    with pytest.raises(BlockedDestination):
        check_address(ip, LOOPBACK_ALLOWED)


def test_allow_list_applies_to_urls_and_zoned_addresses() -> None:
    check_url("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED)
    check_url("http://[::1]:8080/hook", LOOPBACK_ALLOWED)
    check_address("fe80::1%eth0", OutboundPolicy(allow_networks=("fe80::/10",)))
    check_address("10.1.2.3", OutboundPolicy(allow_networks=("10.0.0.0/8",)))


def test_policy_compiles_networks_and_rejects_bad_cidrs() -> None:
    policy = OutboundPolicy(allow_networks=("10.1.2.3/8", "::1/128"))
    assert policy.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError):
        OutboundPolicy(allow_networks=("not-a-network",))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"allow_networks": ["10.0.0.0/33"]}, OutboundPolicy)
    assert msgspec.convert({"allow_networks": ["127.0.0.0/8"]}, OutboundPolicy) == OutboundPolicy(
        allow_networks=("127.0.0.0/8",)
    )


@given(st.text())
def test_check_address_only_refuses_or_rejects_for_any_string(text: str) -> None:
    with contextlib.suppress(BlockedDestination, ValueError):
        check_address(text, NO_EXCEPTIONS)


@given(st.text())
def test_check_url_only_refuses_for_any_string(text: str) -> None:
    with contextlib.suppress(BlockedDestination):
        check_url(text, NO_EXCEPTIONS)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


@given(st.ip_addresses())
def test_only_global_addresses_pass(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    try:
        check_address(str(address), NO_EXCEPTIONS)
    except BlockedDestination:
        return
    # NAT64 is judged by the IPv4 address it carries, which ipaddress does not do.
    assert address.is_global or address in NAT64
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        assert address.ipv4_mapped.is_global


class FakeResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_keeps_only_allowed_addresses() -> None:
    inner = FakeResolver("127.0.0.1", "93.184.216.34", "10.0.0.1", "2606:2800:220:1::")
    resolver = GuardedResolver(NO_EXCEPTIONS, inner)
    results = await resolver.resolve("rebind.example", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1::"]
    assert all(r["port"] == 443 for r in results)


async def test_resolver_refuses_a_name_with_only_private_addresses() -> None:
    resolver = GuardedResolver(NO_EXCEPTIONS, FakeResolver("127.0.0.1", "::1", "fe80::1%eth0"))
    with pytest.raises(BlockedDestination) as info:
        await resolver.resolve("internal.example", 80)
    assert str(info.value) == (
        "destination internal.example is not allowed: it resolves to "
        "127.0.0.1 (loopback address), ::1 (loopback address), "
        "fe80::1%eth0 (link-local address); to send there, add its network to "
        "INTERLINK_OUTBOUND_ALLOW_NETWORKS (e.g. 127.0.0.0/8)"
    )


async def test_resolver_respects_the_allow_list() -> None:
    resolver = GuardedResolver(LOOPBACK_ALLOWED, FakeResolver("127.0.0.1", "10.0.0.1"))
    results = await resolver.resolve("localhost", 80)
    assert [r["host"] for r in results] == ["127.0.0.1"]


async def test_resolver_reports_no_addresses_as_a_lookup_failure() -> None:
    resolver = GuardedResolver(NO_EXCEPTIONS, FakeResolver())
    with pytest.raises(socket.gaierror):
        await resolver.resolve("empty.example", 80)


async def test_resolver_closes_its_inner_resolver() -> None:
    inner = FakeResolver()
    await GuardedResolver(NO_EXCEPTIONS, inner).close()
    assert inner.closed


@pytest.mark.parametrize("target", ["127.0.0.1", "http://10.0.0.5/", "http://[::1]:8/"])
def test_every_refused_address_names_the_setting_that_allows_it(target: str) -> None:
    with pytest.raises(BlockedDestination, match=ALLOW_SETTING):
        if target.startswith("http"):
            check_url(target, NO_EXCEPTIONS)
        else:
            check_address(target, NO_EXCEPTIONS)


async def test_a_host_name_resolving_to_loopback_gets_a_warning() -> None:
    warning = await destination_warning("http://localhost:9999/", NO_EXCEPTIONS)
    assert warning is not None and "loopback" in warning and ALLOW_SETTING in warning
    assert await destination_warning("http://localhost:9999/", LOOPBACK_ALLOWED) is None


async def test_an_ip_literal_is_left_to_check_url() -> None:
    assert await destination_warning("http://127.0.0.1/", NO_EXCEPTIONS) is None


async def test_a_name_that_does_not_resolve_gets_a_warning() -> None:
    warning = await destination_warning("http://no-such-host.invalid/", NO_EXCEPTIONS)
    assert warning is not None and "does not resolve" in warning


def test_every_session_to_a_tenants_url_is_built_guarded() -> None:
    """Deliveries and partner calls get their sessions from one place, so a fix to the guard
    reaches both; the only other session is the simulated partner's, which posts to
    Interlink's own ingest and takes no URL from a tenant."""
    import interlink

    root = Path(interlink.__file__).parent
    building = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "aiohttp.ClientSession(" in path.read_text()
    }
    assert building == {"delivery/guarded_session.py", "partners/webhook_sender.py"}
