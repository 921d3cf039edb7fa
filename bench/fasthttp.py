"""A minimal HTTP/1.1 client and server on asyncio protocols, for the harness's own hot paths.

On this 2-core machine the harness shares the CPU with the system under test, so what it spends
is taken from what is measured. Measured here (600-byte POSTs on loopback, uvloop): aiohttp's
client costs about 300 µs of CPU per request, this client about 40 µs; aiohttp's server about
200 µs per request, this server about 50 µs. Both are kept deliberately small: keep-alive, one
request in flight per connection, ``Content-Length`` bodies only, parsing by ``httptools`` (the C
parser uvicorn uses; already a dependency of Interlink).

The load generator can use aiohttp instead (``--client aiohttp``) and the receivers too
(``--receiver aiohttp``), to cross-check that the harness does not change what it measures.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import cast
from urllib.parse import urlsplit

import httptools


class _ClientConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[int] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))
            self.abort()

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        self._keep_alive = self._parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())
        if not self._keep_alive:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def request(self, raw: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        assert self.transport is not None and self.waiter is None
        self.waiter = loop.create_future()
        self.transport.write(raw)
        return self.waiter


class Client:
    """Keep-alive connections to one ``host:port``, at most ``limit`` at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self._idle: list[_ClientConnection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_ClientConnection | None]] = (
            collections.deque()
        )

    @staticmethod
    def encode(url: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
        """The whole request, encoded once ahead of time."""
        parts = urlsplit(url)
        head = [f"POST {parts.path or '/'} HTTP/1.1", f"host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"content-length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> _ClientConnection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self.limit:
                self._open += 1
                try:
                    _, conn = await loop.create_connection(_ClientConnection, self.host, self.port)
                except BaseException:
                    self._open -= 1
                    raise
                return conn
            waiter: asyncio.Future[_ClientConnection | None] = loop.create_future()
            self._waiters.append(waiter)
            got = await waiter
            if got is not None:
                return got

    def _release(self, conn: _ClientConnection) -> None:
        if conn.closed:
            self._open -= 1
            conn = None  # type: ignore[assignment]
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)

    async def send(self, raw: bytes, timeout: float) -> int:
        """POST a pre-encoded request; the status code. ConnectionError/TimeoutError otherwise."""
        loop = asyncio.get_running_loop()
        conn = await self._acquire(loop)
        timer = loop.call_later(timeout, conn.abort)
        try:
            return await conn.request(raw, loop)
        except ConnectionError:
            if timer.when() <= loop.time():
                raise TimeoutError(f"no answer within {timeout:g} s") from None
            raise
        finally:
            timer.cancel()
            self._release(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


# server ---------------------------------------------------------------------------------------

# A handler gets the path, the headers (lowercased names) and the body; it returns a status code.
Handler = Callable[[str, dict[str, str], bytes], int]

_REASONS = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found", 400: b"Bad Request"}


class _ServerConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, connections: set[_ServerConnection]) -> None:
        self._handler = handler
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                self.transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._handler(self._url.decode("latin-1"), self._headers, b"".join(self._body))
        keep = self._parser.should_keep_alive()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n%s\r\n"
            % (status, _REASONS.get(status, b"Status"), b"" if keep else b"connection: close\r\n")
        )
        if not keep:
            transport.close()


class Server:
    """Serves ``handler`` on ``host:port``; ``stop`` also drops open keep-alive connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._connections: set[_ServerConnection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self._handler, self._connections),
            host,
            port,
            backlog=4096,
            reuse_address=True,
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        await server.wait_closed()
