"""The two transports of a stream session: Server-Sent Events over a chunked HTTP response, and
WebSocket text messages. Both can be cut off at once (``abort``) when a client stops reading:
Interlink's HTTP server puts a way to close the connection in the request's scope
(``interlink.abort``, http_server.py), since an ASGI ``send`` would wait for the client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from litestar import WebSocket

from interlink.domain.streams import SSE_HEARTBEAT, sse_notice, ws_notice
from interlink.streams.hub import OVERFLOW
from interlink.streams.messages import StreamEvent
from interlink.streams.session import StreamSession

log = structlog.get_logger("interlink.streams")

ABORT_EXTENSION = "interlink.abort"
SSE_RETRY_MS = 1000  # how soon an EventSource reconnects after the stream ends

Send = Callable[[dict[str, Any]], Any]


SEND_TEXTS_EXTENSION = "interlink.ws.send_texts"


def _send_texts_of(scope: Any) -> Callable[[list[bytes]], Awaitable[None]] | None:
    extension = (scope.get("extensions") or {}).get(SEND_TEXTS_EXTENSION) or {}
    send = extension.get("send")
    return send if callable(send) else None


def _abort_of(scope: Any) -> Callable[[], None]:
    extension = (scope.get("extensions") or {}).get(ABORT_EXTENSION) or {}
    abort = extension.get("abort")
    return abort if callable(abort) else (lambda: None)


class Recorder(Protocol):
    """Where open streams and their ends are counted (observability/metrics.Metrics)."""

    def stream_opened(self, transport: str) -> None: ...

    def stream_closed(self, transport: str, reason: str) -> None: ...


# A line per ordinary end would be thousands a minute when a proxy recycles its connections; the
# metrics count those. A client cut off for falling behind is worth a line of its own.
_LOUD = frozenset({OVERFLOW})


def _closed(session: StreamSession, recorder: Recorder, transport: str, reason: str) -> None:
    recorder.stream_closed(transport, reason)
    (log.info if reason in _LOUD else log.debug)(
        "streams.closed",
        tenant_id=session.tenant_id,
        transport=transport,
        reason=reason,
        count=session.count,
        position=session.sent,
    )


class _SseSink:
    def __init__(self, send: Send, abort: Callable[[], None]) -> None:
        self._send, self.abort = send, abort

    async def _body(self, body: bytes, more: bool = True) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": more})

    async def events(self, batch: list[StreamEvent]) -> None:
        await self._body(b"".join(e.sse() for e in batch))

    async def notice(self, name: str, data: bytes) -> None:
        await self._body(sse_notice(name, data))

    async def heartbeat(self) -> None:
        await self._body(SSE_HEARTBEAT)

    async def close(self) -> None:
        await self._body(b"", more=False)


class SseStream:
    """The ASGI answer of ``GET /api/v1/stream``: a never-ending response until the client
    goes, falls behind, or the server shuts down."""

    def __init__(self, session: StreamSession, recorder: Recorder) -> None:
        self.session, self.recorder = session, recorder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # proxies: do not hold the stream back
                ],
            }
        )
        sink = _SseSink(send, _abort_of(scope))

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        self.recorder.stream_opened("sse")
        reason = "send_failed"
        try:
            await sink._body(b"retry: %d\n\n" % SSE_RETRY_MS)
            reason = await self.session.run(sink, disconnected())
        finally:
            _closed(self.session, self.recorder, "sse", reason)


class _WsSink:
    def __init__(self, socket: WebSocket[Any, Any, Any], abort: Callable[[], None]) -> None:
        self._socket, self.abort = socket, abort
        self._send_texts = _send_texts_of(socket.scope)

    async def events(self, batch: list[StreamEvent]) -> None:
        if self._send_texts is not None:  # Interlink's server: the batch in one write
            await self._send_texts([e.ws() for e in batch])
            return
        for e in batch:
            await self._socket.send_data(e.ws().decode())

    async def notice(self, name: str, data: bytes) -> None:
        await self._socket.send_data(ws_notice(name, data))

    async def heartbeat(self) -> None:
        # Protocol pings keep proxies and the server's dead-peer check busy; a browser's
        # script sees no ping, so it gets a message too.
        await self.notice("heartbeat", b"{}")

    async def close(self) -> None:
        await self._socket.close(code=1000)


async def serve_websocket(
    socket: WebSocket[Any, Any, Any], session: StreamSession, recorder: Recorder
) -> None:
    await socket.accept()
    recorder.stream_opened("ws")

    async def disconnected() -> None:
        # What a client sends is not read for anything: only its going matters.
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    reason = "send_failed"
    try:
        reason = await session.run(_WsSink(socket, _abort_of(socket.scope)), disconnected())
    finally:
        _closed(session, recorder, "ws", reason)
