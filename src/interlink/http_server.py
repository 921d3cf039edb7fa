"""The HTTP server ``interlink up`` runs: uvicorn's httptools protocol with connection limits.

uvicorn bounds only the keep-alive idle time. A client could otherwise hold a connection for
ever by sending its headers a byte at a time (slowloris), by sending part of a body and then
nothing, or by sending a header section of any size; and a shutdown waited for such a client.
:class:`LimitedHttpToolsProtocol` adds what the parser callbacks make cheap to enforce:

* headers: the whole header section within ``header_timeout`` of the connection (or of the
  request's first byte on a kept-alive one), at most ``max_header_bytes`` and ``max_headers``
  fields (431 otherwise);
* body: no pause longer than ``body_timeout``, and on average at least ``body_min_rate``
  bytes a second after a grace of ``body_timeout`` (a short chunked body or a Content-Length
  longer than what is sent ends there: 408, then the connection is closed);
* connections: at most ``max_connections`` open at once (503 to the ones over it);
* shutdown: :class:`Server` closes every connection still open once ``shutdown_timeout`` has
  passed, whatever its clients do.

No timer runs per chunk: a body's deadline is only re-read when its timer fires.
"""

from __future__ import annotations

import asyncio
import enum
import http
import json
import signal
import socket
from asyncio import TimerHandle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

if TYPE_CHECKING:
    from interlink.config import Settings


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: float = 1024.0  # bytes a second; 0: only the pause between reads is bounded
    keep_alive: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_connections: int = 1024
    shutdown_timeout: float = 10.0
    ws_ping_seconds: float = 15.0

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            body_min_rate=settings.http_body_min_rate,
            keep_alive=settings.http_keep_alive_seconds,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            max_connections=settings.http_max_connections,
            shutdown_timeout=settings.http_shutdown_timeout_seconds,
            ws_ping_seconds=settings.stream_heartbeat_seconds,
        )


# After an error answer the client may still be sending (a 1 MiB header): the connection is
# half-closed and what arrives is discarded for this long, so the answer is read rather than
# lost to the reset a close with unread data causes.
LINGER_SECONDS = 2.0


class _Phase(enum.Enum):
    IDLE = enum.auto()  # no byte of the next request yet
    HEADERS = enum.auto()  # the request line or headers are arriving
    BODY = enum.auto()  # headers done, the body is arriving
    HANDLED = enum.auto()  # the request is all in: the application has it


class _Refused(Exception):
    """Raised in a parser callback: httptools stops parsing and uvicorn answers an error."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded in time and size (see the module docstring)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _Phase.IDLE
        self._timer: TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None
        self._header_bytes = 0  # read while the headers were arriving (a bound, not exact)
        self._header_fields = 0
        self._parsed_header_bytes = 0
        self._began_in_chunk = False
        self._lingering = False
        self._body_started = 0.0
        self._body_last = 0.0
        self._body_bytes = 0

    # connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer(503, "too many connections; retry later", retry_after=True)
            return
        # A new connection owes its first request's headers from now: one that sends nothing
        # is closed as surely as one that sends a byte at a time.
        self._arm(self.limits.header_timeout, self._headers_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._began_in_chunk = False
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            # Upgraded to a WebSocket: the connection is the WebSocket protocol's now, and no
            # timer of an HTTP request may answer on it.
            self._disarm()
            return
        if self._phase is _Phase.HEADERS:
            # A chunk a request began in may end the one before: its fields are counted as
            # they are parsed, and what is left of it is under one chunk.
            if not self._began_in_chunk:
                self._header_bytes += len(data)
            # A header section that has not ended within the limit is refused before it is
            # all in memory (the parser keeps a field's pieces until the field ends).
            if self._header_bytes > self.limits.max_header_bytes:
                self._answer(431, self._too_large())
        elif self._phase is _Phase.BODY and self._timer is None:
            now = self.loop.time()
            self._body_started = self._body_last = now
            self._arm(self.limits.body_timeout, self._body_overdue)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any parser error, a callback's refusal included.
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, detail = self._refusal
        self._refusal = None
        self._answer(status, detail)

    def shutdown(self) -> None:
        # A request whose headers have not all arrived will not be handled: close it now.
        if self._phase in (_Phase.IDLE, _Phase.HEADERS) and (
            self.cycle is None or self.cycle.response_complete
        ):
            self._disarm()
            self.transport.close()
            return
        super().shutdown()

    # parser callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _Phase.HEADERS
        self._header_bytes = self._header_fields = self._parsed_header_bytes = 0
        self._began_in_chunk = True
        if self._timer is None:  # a kept-alive connection: the next request has begun
            self._arm(self.limits.header_timeout, self._headers_overdue)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} header fields")
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.BODY
        self._body_bytes = 0
        super().on_headers_complete()
        _offer_abort(self.scope, self.transport)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._body_last = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.HANDLED
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase is _Phase.HANDLED:
            self._phase = _Phase.IDLE  # uvicorn's keep-alive timer runs from here
        super().on_response_complete()

    # limits -------------------------------------------------------------------------------------

    def _count_header_bytes(self, n: int) -> None:
        self._parsed_header_bytes += n
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            self._refuse(431, self._too_large())

    def _too_large(self) -> str:
        return f"the request line and headers exceed {self.limits.max_header_bytes} bytes"

    def _refuse(self, status: int, detail: str) -> None:
        self._refusal = (status, detail)
        raise _Refused(detail)

    def _headers_overdue(self) -> None:
        self._timer = None
        if self._phase is _Phase.HEADERS:
            seconds = f"{self.limits.header_timeout:g}"
            self._answer(408, f"the request's headers did not arrive within {seconds} s")
        elif not self.transport.is_closing():
            self.transport.close()  # nothing sent: nobody to answer

    def _body_overdue(self) -> None:
        self._timer = None
        if self._phase is not _Phase.BODY:
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The application is not reading: the wait is not the client's doing.
            self._body_last = now
        deadline = self._body_last + self.limits.body_timeout
        if self.limits.body_min_rate > 0 and not self.flow.read_paused:
            allowed = self._body_bytes / self.limits.body_min_rate
            deadline = min(deadline, self._body_started + self.limits.body_timeout + allowed)
        if now < deadline:
            self._timer = self.loop.call_at(deadline, self._body_overdue)
            return
        self._answer(
            408,
            f"the request body stopped arriving (at most {self.limits.body_timeout:g} s between"
            f" reads, at least {self.limits.body_min_rate:g} bytes/s)",
        )

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _answer(self, status: int, detail: str, *, retry_after: bool = False) -> None:
        """Answers ``status`` with a problem+json body unless a response has begun, then closes
        the connection; the application, if it has the request, then reads a disconnect."""
        self._disarm()
        cycle = self.cycle
        answered = cycle is None or not cycle.response_started
        if answered:
            title = http.HTTPStatus(status).phrase
            body = json.dumps({"title": title, "status": status, "detail": detail}).encode()
            head = [
                STATUS_LINE[status],
                b"content-type: application/problem+json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n",
            ]
            if retry_after:
                head.append(b"retry-after: 1\r\n")
            self.transport.write(b"".join([*head, b"\r\n", body]))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if answered and self.transport.can_write_eof():
            self._lingering = True
            self.transport.write_eof()  # the client reads the answer, then EOF
            self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


# A long-lived response (a stream) whose client stopped reading cannot be ended through ASGI:
# every ``send`` waits for the client to read. The scope's ``interlink.abort`` closes the
# connection instead (api/streams.py uses it on a client that fell behind).
ABORT_EXTENSION = "interlink.abort"


def _offer_abort(scope: Any, transport: asyncio.BaseTransport) -> None:
    extensions = scope.setdefault("extensions", {})
    if extensions is not None:
        extensions[ABORT_EXTENSION] = {"abort": transport.close}


# A stream sends its events in batches; through ASGI each WebSocket message is a write (a
# syscall) of its own. ``interlink.ws.send_texts`` frames a batch and writes it at once.
SEND_TEXTS_EXTENSION = "interlink.ws.send_texts"


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets' sans-I/O), with ``interlink.abort`` and
    ``interlink.ws.send_texts``."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The application's task was only scheduled: it sees the extensions.
        _offer_abort(self.scope, self.transport)
        extensions = self.scope.get("extensions")
        if extensions is not None:
            extensions[SEND_TEXTS_EXTENSION] = {"send": self.send_texts}

    async def send_texts(self, texts: Sequence[bytes]) -> None:
        """Text messages (UTF-8) in one write, once the connection is open; framed (and
        compressed, if negotiated) by the protocol as ``websocket.send`` would."""
        await self.writable.wait()  # flow control, as for every send
        if self.disconnected or self.close_sent or not self.handshake_complete:
            raise ClientDisconnected()
        try:
            for text in texts:
                self.conn.send_text(text)
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for one server's limits (uvicorn makes it from the class)."""
    return cast(
        "type[LimitedHttpToolsProtocol]",
        type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits}),
    )


class Server(uvicorn.Server):
    """uvicorn's server with :class:`LimitedHttpToolsProtocol`, told that shutdown begins and
    never re-raising the signal after it.

    uvicorn re-raises a caught SIGINT/SIGTERM once it has shut down, which would interrupt the
    shutdown of Interlink's own roles that follows; here the signal ends the serving and the
    process then exits normally.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        limits: ConnectionLimits,
        on_stopping: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                lifespan="off",
                access_log=False,
                log_level="warning",
                loop="none",
                http=limited_protocol(limits),
                ws=AbortableWebSocketProtocol,
                # Pings find dead peers of WebSocket streams (a pong is owed within the timeout).
                ws_ping_interval=limits.ws_ping_seconds,
                ws_ping_timeout=limits.ws_ping_seconds,
                # Annotated int, used as a float (call_later, asyncio.timeout).
                timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
                timeout_graceful_shutdown=limits.shutdown_timeout,  # type: ignore[arg-type]
            )
        )
        self.limits = limits
        self._on_stopping = on_stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
            return
        if self._on_stopping is not None:
            self._on_stopping()
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # uvicorn cancels the requests still running at the deadline but leaves their
        # connections open: close them, so no client outlives the deadline.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
