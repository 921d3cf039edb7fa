"""The two transports of a stream session: Server-Sent Events over a chunked HTTP response, and
WebSocket text messages. Both can be cut off at once (``abort``) when a client stops reading:
Interlink's HTTP server puts a way to close the connection in the request's scope
(``interlink.abort``, http_server.py), since an ASGI ``send`` would wait for the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from litestar import WebSocket

from interlink.domain.streams import SSE_HEARTBEAT, sse_notice, ws_notice
from interlink.streams.messages import StreamEvent
from interlink.streams.session import StreamSession

log = structlog.get_logger("interlink.streams")

ABORT_EXTENSION = "interlink.abort"
SSE_RETRY_MS = 1000  # how soon an EventSource reconnects after the stream ends

Send = Callable[[dict[str, Any]], Any]


def _abort_of(scope: Any) -> Callable[[], None]:
    extension = (scope.get("extensions") or {}).get(ABORT_EXTENSION) or {}
    abort = extension.get("abort")
    return abort if callable(abort) else (lambda: None)


def _closed(session: StreamSession, transport: str, reason: str) -> None:
    log.info(
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

    def __init__(self, session: StreamSession) -> None:
        self.session = session

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
        await sink._body(b"retry: %d\n\n" % SSE_RETRY_MS)

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        reason = await self.session.run(sink, disconnected())
        _closed(self.session, "sse", reason)


class _WsSink:
    def __init__(self, socket: WebSocket[Any, Any, Any], abort: Callable[[], None]) -> None:
        self._socket, self.abort = socket, abort

    async def events(self, batch: list[StreamEvent]) -> None:
        for e in batch:
            await self._socket.send_data(e.ws())

    async def notice(self, name: str, data: bytes) -> None:
        await self._socket.send_data(ws_notice(name, data))

    async def heartbeat(self) -> None:
        # Protocol pings keep proxies and the server's dead-peer check busy; a browser's
        # script sees no ping, so it gets a message too.
        await self.notice("heartbeat", b"{}")

    async def close(self) -> None:
        await self._socket.close(code=1000)


async def serve_websocket(socket: WebSocket[Any, Any, Any], session: StreamSession) -> None:
    await socket.accept()

    async def disconnected() -> None:
        # What a client sends is not read for anything: only its going matters.
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    reason = await session.run(_WsSink(socket, _abort_of(socket.scope)), disconnected())
    _closed(session, "ws", reason)
