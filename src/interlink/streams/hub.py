"""One reader of the log per process, fanning out to every stream connection it serves.

The hub reads the events after its position (every tenant's, in the system scope) when woken
(an append in this process, or a NOTIFY from another on PostgreSQL) or once per poll interval,
and hands each to the subscriptions of its tenant whose filter it matches: one query per
interval for the process, not one per client. A subscription's queue is bounded; one that
overflows is ended (its connection tells the client where to resume and disconnects), so a
client that stops reading costs its own queue and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

import structlog

from interlink.domain.streams import StreamFilter, readable_prefix
from interlink.storage.stream_log import StreamLog
from interlink.storage.tenancy import system_scope
from interlink.streams.messages import StreamEvent

log = structlog.get_logger("interlink.streams")

OVERFLOW, SHUTDOWN = "overflow", "shutdown"


class HubClosed(Exception):
    """The process is shutting down: no new streams."""


class Subscription:
    """One connection's share of the hub: its filter, its bounded queue, why it ended."""

    def __init__(self, tenant_id: str, filter: StreamFilter, after: int, limit: int) -> None:
        self.tenant_id, self.filter = tenant_id, filter
        self.after = after  # live events at or before this position are the replay's (or seen)
        self.limit = limit
        self.pending: deque[StreamEvent] = deque()
        self.ready = asyncio.Event()
        self.ended: str | None = None
        self.ended_event = asyncio.Event()

    def offer(self, matched: Sequence[StreamEvent]) -> None:
        if self.ended is not None:
            return
        if matched[0].seq <= self.after:
            matched = [e for e in matched if e.seq > self.after]
            if not matched:
                return
        if len(self.pending) + len(matched) > self.limit:
            self.end(OVERFLOW)
            return
        self.pending.extend(matched)
        self.after = matched[-1].seq
        self.ready.set()

    def take(self) -> list[StreamEvent]:
        taken = list(self.pending)
        self.pending.clear()
        return taken

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self.pending.clear()  # never sent: the client resumes from what it had
            self.ended_event.set()
            self.ready.set()


class StreamHub:
    def __init__(
        self,
        stream_log: StreamLog,
        *,
        poll_interval: float,
        queue_size: int,
        batch: int = 1000,
        batch_seconds: float = 0.0,
        gap_hold: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = stream_log
        self._poll = poll_interval
        self.queue_size = queue_size
        # A read hands a subscription at most half its queue, so one read never overflows a
        # client that is keeping up.
        self._batch = max(1, min(batch, queue_size // 2))
        self._gap_hold = gap_hold
        # The least time between two reads: appends in between go out as one batch, so a busy
        # log costs each connection a write per interval, not one per append.
        self._batch_seconds = batch_seconds
        self._now = monotonic
        # tenant → filter → subscriptions: a filter is matched once per event, however many
        # connections share it.
        self._subs: dict[str, dict[StreamFilter, set[Subscription]]] = {}
        self._count = 0
        self._position: int | None = None  # None while nobody listens: nothing is read
        self._generation = 0  # moves when the position is dropped, voiding a read in flight
        self._gap_since: float | None = None
        self._init = asyncio.Lock()
        self._wake = asyncio.Event()
        self.closed = False

    @property
    def connections(self) -> int:
        return self._count

    @property
    def position(self) -> int | None:
        return self._position

    def wake(self) -> None:
        self._wake.set()

    async def subscribe(
        self, tenant_id: str, filter: StreamFilter, after: int | None
    ) -> tuple[Subscription, int]:
        """A subscription to live events after the hub's position (or after ``after`` when
        that is later), and that position: what the connection replays up to from the log."""
        if self.closed:
            raise HubClosed("the server is shutting down")
        async with self._init:
            if self._position is None:
                with system_scope("stream hub: the log's head"):
                    self._position = await self._log.head()
        head = self._position
        # No await between reading the position and registering: the next fan-out hands this
        # subscription exactly what follows ``head``.
        sub = Subscription(tenant_id, filter, max(head, after or 0), self.queue_size)
        self._subs.setdefault(tenant_id, {}).setdefault(filter, set()).add(sub)
        self._count += 1
        self._wake.set()
        return sub, head

    def unsubscribe(self, sub: Subscription) -> None:
        by_filter = self._subs.get(sub.tenant_id, {})
        subs = by_filter.get(sub.filter)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self._count -= 1
        if not subs:
            del by_filter[sub.filter]
            if not by_filter:
                del self._subs[sub.tenant_id]
        if not self._count:
            # Nobody listens: stop reading; the next subscriber starts from the head then.
            self._position = None
            self._generation += 1
            self._gap_since = None

    def close(self) -> None:
        """Shutdown: every stream ends now (its client is told where to resume)."""
        self.closed = True
        for by_filter in list(self._subs.values()):
            for subs in list(by_filter.values()):
                for sub in list(subs):
                    sub.end(SHUTDOWN)
        self._wake.set()

    async def run(self) -> None:
        while not self.closed:
            timeout = self._poll if self._gap_since is None else min(self._poll, 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                if await self._read() and self._batch_seconds:
                    await asyncio.sleep(self._batch_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: try again next interval
                log.warning("streams.read_failed", error=repr(exc))

    async def _read(self) -> bool:
        """Reads and fans out what follows the position; answers whether anything did."""
        fanned = False
        while self._count and self._position is not None and not self.closed:
            position, generation = self._position, self._generation
            with system_scope("stream hub: the log for every connection"):
                batch = await self._log.read_after(position, self._batch)
            if generation != self._generation:
                return fanned
            gap_open = self._gap_since is not None and self._now() - self._gap_since >= (
                self._gap_hold
            )
            n = readable_prefix(position, [e.seq for e in batch], gap_open)
            if n < len(batch):
                if self._gap_since is None or gap_open:
                    self._gap_since = self._now()
            else:
                self._gap_since = None
            if n:
                self._fan_out([StreamEvent(e) for e in batch[:n]])
                self._position = batch[n - 1].seq
                fanned = True
            if n < self._batch:
                return fanned
        return fanned

    def _fan_out(self, batch: list[StreamEvent]) -> None:
        by_tenant: dict[str, list[StreamEvent]] = {}
        for e in batch:
            if e.tenant_id in self._subs:
                by_tenant.setdefault(e.tenant_id, []).append(e)
        for tenant_id, events in by_tenant.items():
            for f, subs in list(self._subs[tenant_id].items()):
                matched = [e for e in events if f.matches(e.type, e.source_id, e.key)]
                if matched:
                    for sub in list(subs):
                        sub.offer(matched)
