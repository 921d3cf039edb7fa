"""One stream connection, whatever its transport: replay from the log, then live from the hub.

The seam: the connection subscribes first and learns the hub's position ``head``; it replays
the tenant's events in (resume, head] from the database, then sends what the hub queued, all
of it after ``head``. Nothing is missed between the two and nothing is sent twice.

A client that does not keep up overflows its bounded queue: it is sent a notice with the
position to resume from (the last event it was sent) and disconnected. A send that does not
complete at all (the client stopped reading, its socket buffer full) is not waited for: the
connection is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol

import msgspec
import structlog

from interlink.domain.streams import StreamFilter
from interlink.storage.stream_log import StreamLog
from interlink.storage.tenancy import system_scope, tenant_scope
from interlink.streams.hub import OVERFLOW, StreamHub, Subscription
from interlink.streams.messages import StreamEvent

log = structlog.get_logger("interlink.streams")

REPLAY_PAGE = 500
NOTICE_SECONDS = 2.0  # how long a last notice may take to send before the connection is cut


class Sink(Protocol):
    """A transport's side of a stream (SSE or WebSocket)."""

    async def events(self, batch: list[StreamEvent]) -> None: ...

    async def notice(self, name: str, data: bytes) -> None: ...

    async def heartbeat(self) -> None: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


def _json(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


class StreamSession:
    def __init__(
        self,
        hub: StreamHub,
        stream_log: StreamLog,
        tenant_id: str,
        filter: StreamFilter,
        resume: int | None,
        heartbeat_seconds: float,
    ) -> None:
        self.hub, self.log = hub, stream_log
        self.tenant_id, self.filter = tenant_id, filter
        self.resume = resume
        self.heartbeat = heartbeat_seconds
        self.sent: int = 0  # the position the client has everything up to
        self.count = 0
        self._sub: Subscription | None = None
        self._head = 0
        self._notices: list[tuple[str, bytes]] = []

    async def open(self) -> None:
        """Subscribes to the hub (``HubClosed`` while the server shuts down), before anything
        is sent: a refusal can still be an HTTP answer."""
        self._notices = await self._bounds_notices()
        self._sub, self._head = await self.hub.subscribe(self.tenant_id, self.filter, self.resume)
        self.sent = self._head if self.resume is None else self.resume

    async def run(self, sink: Sink, disconnected: Awaitable[object]) -> str:
        """Streams (after ``open``) until the client goes, the hub ends the subscription or the
        writer fails; answers why it ended."""
        sub, head = self._sub, self._head
        assert sub is not None, "open() first"
        writer = asyncio.create_task(self._write(sink, sub, head, self._notices))
        gone = asyncio.ensure_future(disconnected)
        ended = asyncio.create_task(sub.ended_event.wait())
        try:
            await asyncio.wait({writer, gone, ended}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                return "disconnected"
            if writer.done() and writer.exception() is not None:
                return "send_failed"
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            reason = sub.ended or "ended"
            await self._last_word(sink, reason)
            return reason
        finally:
            self.hub.unsubscribe(sub)
            for task in (writer, gone, ended):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(writer, gone, ended, return_exceptions=True)

    async def _bounds_notices(self) -> list[tuple[str, bytes]]:
        """What the client is told before its replay: history it asked for that is no longer
        kept, or a position the log has not reached (then it resumes from the log's head)."""
        if self.resume is None:
            return []
        with system_scope("stream: the log's bounds"):
            bounds = await self.log.bounds()
        asked = self.resume
        if bounds.first is not None and asked < bounds.first - 1:
            detail = (
                f"events after position {asked} up to {bounds.first - 1} are no longer kept "
                f"(retention); the stream restarts with position {bounds.first}, the oldest kept"
            )
            self.resume = bounds.first - 1
            return [("restart", _json(requested=asked, restart_after=self.resume, detail=detail))]
        if asked > bounds.last:
            detail = (
                f"position {asked} is beyond the newest in the log ({bounds.last}): the stream "
                f"continues after {bounds.last} (was the database replaced?)"
            )
            self.resume = bounds.last
            return [("restart", _json(requested=asked, restart_after=self.resume, detail=detail))]
        return []

    async def _write(
        self, sink: Sink, sub: Subscription, head: int, notices: list[tuple[str, bytes]]
    ) -> None:
        for name, data in notices:
            await sink.notice(name, data)
        if self.resume is not None and self.resume < head:
            await self._replay(sink, self.resume, head)
        while True:
            sub.ready.clear()
            if sub.pending:
                await self._send(sink, sub.take())
                continue
            if sub.ended is not None:
                return
            try:
                # asyncio.timeout, not wait_for: wait_for makes a task per wait, and this
                # wait ends once per batch for every connection.
                async with asyncio.timeout(self.heartbeat):
                    await sub.ready.wait()
            except TimeoutError:
                await sink.heartbeat()

    async def _replay(self, sink: Sink, after: int, upto: int) -> None:
        f = self.filter
        while after < upto:
            with tenant_scope(self.tenant_id):
                page = await self.log.replay(
                    self.tenant_id, after, upto, f.sources, f.keys, REPLAY_PAGE
                )
            if not page:
                break
            matched = [StreamEvent(e) for e in page if f.matches(e.type, e.source_id, e.key)]
            if matched:
                await self._send(sink, matched)
            after = page[-1].seq
        self.sent = max(self.sent, upto)

    async def _send(self, sink: Sink, batch: list[StreamEvent]) -> None:
        await sink.events(batch)
        self.sent = batch[-1].seq
        self.count += len(batch)

    async def _last_word(self, sink: Sink, reason: str) -> None:
        if reason == OVERFLOW:
            detail = (
                f"the client fell more than {self.hub.queue_size} events behind; reconnect "
                f"from position {self.sent}"
            )
        else:
            detail = f"the server is shutting down; reconnect from position {self.sent}"
        try:
            await asyncio.wait_for(
                sink.notice(reason, _json(resume_from=self.sent, detail=detail)), NOTICE_SECONDS
            )
            await asyncio.wait_for(sink.close(), NOTICE_SECONDS)
        except (TimeoutError, OSError):
            sink.abort()  # the client reads nothing more: do not wait for it
