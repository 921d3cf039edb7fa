"""HttpSender against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from interlink.delivery.http_sender import HttpSender
from interlink.delivery.outbound_guard import BlockedDestination, GuardedResolver, OutboundPolicy
from interlink.domain.delivery import AttemptOutcome

LOOPBACK = OutboundPolicy(allow_networks=("127.0.0.0/8", "::1/128"))
SIGNATURE = "v1,c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtbGVhaw=="
HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": SIGNATURE}
BODY = b'{"type":"order.created","data":{"id":1}}'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@dataclass
class Canary:
    """A bare TCP listener: counts connections, so even one that sends nothing is noticed."""

    port: int
    connections: int = 0


class Servers:
    def __init__(self) -> None:
        # Handlers that would otherwise run forever wait on this, so teardown is quick.
        self.stop = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        # Python 3.11's Server.close() leaves accepted connections open; close them ourselves
        # so no socket outlives the test's event loop.
        self._handlers: set[asyncio.Task[None]] = set()

    def _track(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def receiver(self, handler: Handler) -> Receiver:
        receiver = Receiver(port=0)

        async def recording(request: web.Request) -> web.StreamResponse:
            receiver.seen.append(Seen(request.method, dict(request.headers), await request.read()))
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recording)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        receiver.port = server.sockets[0].getsockname()[1]
        return receiver

    async def canary(self) -> Canary:
        canary = Canary(port=0)

        async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._track()
            canary.connections += 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self._servers.append(server)
        canary.port = server.sockets[0].getsockname()[1]
        # Listen on ::1 too where the host has IPv6, so "localhost" cannot slip past that way.
        with contextlib.suppress(OSError):
            self._servers.append(await asyncio.start_server(on_connect, "::1", canary.port))
        return canary

    async def raw(self, on_connect: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> int:
        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._track()
            with contextlib.suppress(ConnectionError):
                await on_connect(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.stop.set()
        for runner in self._runners:
            await runner.cleanup()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    servers = Servers()
    yield servers
    await servers.close()


@pytest.fixture
async def make_sender() -> AsyncIterator[Callable[..., Awaitable[HttpSender]]]:
    senders: list[HttpSender] = []

    async def make(policy: OutboundPolicy = LOOPBACK, **kwargs: int | float | str) -> HttpSender:
        sender = HttpSender(policy, **kwargs)  # type: ignore[arg-type]
        await sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


@pytest.fixture
async def sender(make_sender: Callable[..., Awaitable[HttpSender]]) -> HttpSender:
    return await make_sender()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_2xx_succeeds_and_delivers_body_and_headers(
    servers: Servers, sender: HttpSender
) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=200, text="thanks")

    receiver = await servers.receiver(ok)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.SUCCEEDED
    assert result.status_code == 200
    assert result.response_excerpt == "thanks"
    assert result.error is None
    assert result.retry_after is None
    assert 0 < result.latency_ms < 2000
    [seen] = receiver.seen
    assert seen.method == "POST"
    assert seen.body == BODY
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "Interlink/0.1"
    for name, value in HEADERS.items():
        assert seen.headers[name] == value


async def test_500_with_retry_after_fails_with_the_delay(
    servers: Servers, sender: HttpSender
) -> None:
    async def overloaded(_: web.Request) -> web.Response:
        return web.Response(status=500, text="try later", headers={"Retry-After": "7"})

    receiver = await servers.receiver(overloaded)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.status_code == 500
    assert result.retry_after == 7.0
    assert result.response_excerpt == "try later"


async def test_429_with_an_http_date_retry_after(servers: Servers, sender: HttpSender) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))

    async def throttled(_: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": when})

    receiver = await servers.receiver(throttled)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.retry_after is not None
    assert 110 < result.retry_after <= 120


async def test_redirect_is_a_failure_and_never_followed(
    servers: Servers, sender: HttpSender
) -> None:
    async def target_handler(_: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    target = await servers.receiver(target_handler)

    async def redirect(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": target.url})

    receiver = await servers.receiver(redirect)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.status_code == 302
    assert len(receiver.seen) == 1
    assert target.seen == []


async def test_410_is_gone(servers: Servers, sender: HttpSender) -> None:
    async def gone(_: web.Request) -> web.Response:
        return web.Response(status=410)

    receiver = await servers.receiver(gone)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.GONE
    assert result.status_code == 410
    assert result.response_excerpt is None


async def test_a_receiver_that_never_answers_times_out(
    servers: Servers, sender: HttpSender
) -> None:
    async def hang(_: web.Request) -> web.Response:
        await servers.stop.wait()
        return web.Response()

    receiver = await servers.receiver(hang)
    started = time.perf_counter()
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=1.0)
    elapsed = time.perf_counter() - started

    assert result.outcome is AttemptOutcome.ERROR
    assert result.status_code is None
    assert result.error == "timed out after 1 s"
    # The 1 s timeout fired: not early, and within 3x (a busy machine delays, never hastens).
    assert 0.5 <= elapsed <= 3.0
    assert 500 <= result.latency_ms <= 3000


async def test_a_body_trickled_forever_ends_at_the_timeout(
    servers: Servers, sender: HttpSender
) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while not servers.stop.is_set():
                await response.write(b"x")
                await asyncio.sleep(0.2)
        return response

    receiver = await servers.receiver(trickle)
    started = time.perf_counter()
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=1.0)
    elapsed = time.perf_counter() - started

    assert 0.5 <= elapsed <= 3.0  # the 1 s timeout, within 3x
    # The receiver did answer 200, so the status decides; the cut-off is noted.
    assert result.outcome is AttemptOutcome.SUCCEEDED
    assert result.status_code == 200
    assert result.error == "timed out after 1 s reading the response body"
    assert result.response_excerpt is not None
    assert 1 <= len(result.response_excerpt) <= 10


async def test_headers_trickled_forever_end_at_the_timeout(
    servers: Servers, sender: HttpSender
) -> None:
    async def slowloris(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not servers.stop.is_set():
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)

    port = await servers.raw(slowloris)
    started = time.perf_counter()
    result = await sender.send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=1.0)

    assert 0.5 <= time.perf_counter() - started <= 1.5
    assert result.outcome is AttemptOutcome.ERROR
    assert result.error == "timed out after 1 s"


async def test_a_huge_body_is_not_read_beyond_the_excerpt(
    servers: Servers, make_sender: Callable[..., Awaitable[HttpSender]]
) -> None:
    async def huge(_: web.Request) -> web.Response:
        return web.Response(status=500, body=b"y" * (10 * 1024 * 1024))

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="fine")

    receiver = await servers.receiver(huge)
    sender = await make_sender(response_excerpt_bytes=2048)
    started = time.perf_counter()
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=5.0)

    assert time.perf_counter() - started < 2.0
    assert result.outcome is AttemptOutcome.FAILED
    assert result.response_excerpt == "y" * 2048
    assert result.error is None
    # The half-read connection was dropped, not returned to the pool.
    second = await sender.send((await servers.receiver(ok)).url, BODY, HEADERS, timeout=2.0)
    assert second.outcome is AttemptOutcome.SUCCEEDED


async def test_excerpt_is_decoded_leniently(servers: Servers, sender: HttpSender) -> None:
    async def binary(_: web.Request) -> web.Response:
        return web.Response(status=400, body=b"bad \xff\xfe input")

    receiver = await servers.receiver(binary)
    result = await sender.send(receiver.url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.response_excerpt == "bad \ufffd\ufffd input"


async def test_connection_refused_is_an_error(sender: HttpSender) -> None:
    port = unused_port()
    result = await sender.send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.ERROR
    assert result.status_code is None
    assert result.error == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert SIGNATURE not in result.error


async def test_connection_closed_without_a_response_is_an_error(
    servers: Servers, sender: HttpSender
) -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = await servers.raw(hang_up)
    result = await sender.send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.ERROR
    assert result.error
    assert SIGNATURE not in result.error


async def test_an_unresolvable_host_is_an_error(sender: HttpSender) -> None:
    result = await sender.send("http://does-not-exist.invalid/", BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.ERROR
    assert result.error


LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://0x7f.1:{port}/",
    "http://127.1:{port}/",
    "http://017700000001:{port}/",
    "http://localhost:{port}/",
    "http://LOCALHOST:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::1]:{port}/",
    "http://0:{port}/",
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
async def test_loopback_is_refused_without_an_allow_list(
    servers: Servers, make_sender: Callable[..., Awaitable[HttpSender]], template: str
) -> None:
    canary = await servers.canary()
    sender = await make_sender(OutboundPolicy())

    result = await sender.send(template.format(port=canary.port), BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.ERROR
    assert result.status_code is None
    assert result.error is not None
    assert "is not allowed" in result.error
    assert SIGNATURE not in result.error
    await asyncio.sleep(0.05)  # give a connection that did get through time to be counted
    assert canary.connections == 0


async def test_the_canary_does_notice_a_connection(servers: Servers, sender: HttpSender) -> None:
    # Control for the test above: with loopback allowed, the same canary counts the attempt.
    canary = await servers.canary()
    await sender.send(f"http://localhost:{canary.port}/", BODY, HEADERS, timeout=2.0)
    await asyncio.sleep(0.05)
    assert canary.connections >= 1


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://0x7f000001:{port}/hook",
    ],
)
async def test_loopback_is_reached_with_an_allow_list(
    servers: Servers, sender: HttpSender, template: str
) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    receiver = await servers.receiver(ok)
    result = await sender.send(template.format(port=receiver.port), BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.SUCCEEDED
    assert len(receiver.seen) == 1


@pytest.mark.parametrize(
    "host", ["2130706433", "127.1", "0x7f000001", "0x7f.1", "017700000001", "0", "localhost"]
)
async def test_the_resolver_refuses_numeric_spellings_of_loopback(host: str) -> None:
    # check_url already refuses some of these; the resolver must hold on its own as well,
    # because getaddrinfo turns each of them into a loopback address.
    resolver = GuardedResolver(OutboundPolicy())
    try:
        with pytest.raises(BlockedDestination, match="is not allowed"):
            await resolver.resolve(host, 80, socket.AF_UNSPEC)
    finally:
        await resolver.close()


async def test_send_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        await HttpSender(LOOPBACK).send("http://127.0.0.1:1/", BODY, HEADERS, timeout=1.0)


async def test_start_and_close_are_idempotent() -> None:
    sender = HttpSender(LOOPBACK)
    await sender.start()
    await sender.start()
    await sender.close()
    await sender.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)


async def _listen(servers: Servers, handle: Callable[..., Awaitable[None]]) -> str:
    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        servers._track()
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    servers._servers.append(server)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"


async def test_a_stale_pooled_connection_is_not_an_attempt(
    servers: Servers, sender: HttpSender
) -> None:
    """The receiver hangs up a kept-alive connection as the next request arrives on it (a
    server closing idle connections, its close crossing the request): the request is sent again
    at once on a fresh connection, and the attempt is the fresh one's answer."""
    seen = {"connections": 0, "answered": 0}

    async def keep_alive_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        await _read_request(reader)
        seen["answered"] += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)  # the next request on this connection: hang up, unanswered

    url = await _listen(servers, keep_alive_once)
    first = await sender.send(url, BODY, HEADERS, timeout=2.0)
    second = await sender.send(url, BODY, HEADERS, timeout=2.0)

    assert first.outcome is AttemptOutcome.SUCCEEDED, first
    assert second.outcome is AttemptOutcome.SUCCEEDED, second
    assert seen == {"connections": 2, "answered": 2}


async def test_a_fresh_connection_closed_unanswered_is_an_attempt_and_not_retried(
    servers: Servers, sender: HttpSender
) -> None:
    seen = {"connections": 0}

    async def hang_up_after_reading(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        await _read_request(reader)

    url = await _listen(servers, hang_up_after_reading)
    result = await sender.send(url, BODY, HEADERS, timeout=2.0)

    assert result.outcome is AttemptOutcome.ERROR
    assert result.error == "the server closed the connection without a response"
    assert seen == {"connections": 1}
