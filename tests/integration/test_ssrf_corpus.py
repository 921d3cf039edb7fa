"""The SSRF acceptance corpus, end to end through the real HTTP sender: every hostile URL —
private, loopback, link-local, the metadata address, mapped IPv6, numeric spellings, names that
resolve to private addresses, a redirect to loopback — is refused, and a canary listening on
loopback sees no connection at all."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from tests.unit.test_outbound_guard import HOSTILE_ADDRESSES

from interlink.delivery.http_sender import HttpSender
from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.domain.delivery import AttemptOutcome

BODY, HEADERS = b'{"type":"t","data":{}}', {"content-type": "application/json"}

# Names a partner could register for an endpoint, each answering with a private address: the
# guard checks what a name resolves to, not the name.
PRIVATE_NAMES = {
    "metadata.attacker.example": "169.254.169.254",
    "db.attacker.example": "10.1.2.3",
    "router.attacker.example": "192.168.1.1",
    "rebind.attacker.example": "127.0.0.1",
    "six.attacker.example": "::1",
    "mapped.attacker.example": "::ffff:127.0.0.1",
}


class NameService(AbstractResolver):
    """Answers for the corpus's names, stands in for DNS on this closed network; everything
    else goes to the system's resolver."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = PRIVATE_NAMES.get(host)
        if address is None:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=family, type=socket.SOCK_STREAM
            )
            return [self._result(host, str(i[4][0]), port, i[0]) for i in infos]
        version = ipaddress.ip_address(address).version
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        return [self._result(host, address, port, family)]

    @staticmethod
    def _result(host: str, address: str, port: int, family: int) -> ResolveResult:
        return {
            "hostname": host,
            "host": address,
            "port": port,
            "family": family,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        }

    async def close(self) -> None:
        return None


def _url(address: str, port: int) -> str:
    host = address.split("%")[0]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/hook"


@pytest.fixture
async def canary() -> AsyncIterator[list[int]]:
    hits = [0]

    async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits[0] += 1
        writer.close()

    servers = [await asyncio.start_server(on_connect, "127.0.0.1", 0)]
    port = servers[0].sockets[0].getsockname()[1]
    with contextlib.suppress(OSError):
        servers.append(await asyncio.start_server(on_connect, "::1", port))
    hits.append(port)
    yield hits
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_the_hostile_corpus_is_refused_and_the_canary_sees_nothing(
    canary: list[int],
) -> None:
    port = canary[1]
    corpus = [_url(a, port) for a in HOSTILE_ADDRESSES]
    corpus += [
        f"http://{spelling}:{port}/hook"
        for spelling in (
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "127.1",
            "017700000001",
            "0",
            "localhost",
            "LOCALHOST",
        )
    ]
    corpus += [f"http://{name}:{port}/hook" for name in PRIVATE_NAMES]
    corpus += [f"https://{name}:{port}/hook" for name in PRIVATE_NAMES]
    assert len(corpus) >= 40

    sender = HttpSender(OutboundPolicy(), name_service=NameService())
    await sender.start()
    try:
        refused = []
        for url in corpus:
            result = await sender.send(url, BODY, HEADERS, timeout=2.0)
            assert result.outcome is AttemptOutcome.ERROR, url
            assert result.error is not None and "not allowed" in result.error, (url, result.error)
            refused.append(url)
    finally:
        await sender.close()
    await asyncio.sleep(0.1)
    print(f"\nSSRF corpus: {len(refused)} hostile URLs refused, canary connections {canary[0]}")
    assert canary[0] == 0


async def test_a_redirect_to_loopback_is_never_followed(canary: list[int]) -> None:
    # The receiver is allowed (127.0.0.2 only, as a private deployment would allow its own
    # network); it answers with a redirect to the canary on 127.0.0.1, which is not allowed
    # and, redirects being never followed, is never even tried.
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{canary[1]}/hook")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sender = HttpSender(OutboundPolicy(allow_networks=("127.0.0.2/32",)))
    await sender.start()
    try:
        result = await sender.send(f"http://127.0.0.2:{port}/hook", BODY, HEADERS, timeout=2.0)
        assert result.outcome is AttemptOutcome.FAILED and result.status_code == 302
        direct = await sender.send(f"http://127.0.0.1:{canary[1]}/", BODY, HEADERS, timeout=2.0)
        assert direct.outcome is AttemptOutcome.ERROR  # and 127.0.0.1 itself is refused
    finally:
        await sender.close()
        await runner.cleanup()
    await asyncio.sleep(0.1)
    assert canary[0] == 0


async def test_the_canary_counts_a_connection_that_gets_through(canary: list[int]) -> None:
    # The control: the same canary, with loopback allowed, does see the attempt.
    sender = HttpSender(OutboundPolicy(allow_networks=("127.0.0.0/8",)), name_service=NameService())
    await sender.start()
    try:
        await sender.send(f"http://rebind.attacker.example:{canary[1]}/", BODY, HEADERS, 2.0)
    finally:
        await sender.close()
    await asyncio.sleep(0.1)
    assert canary[0] >= 1
