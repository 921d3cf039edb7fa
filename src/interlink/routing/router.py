"""The router: follows the event log and creates deliveries for matching subscriptions.

Deliveries and the cursor move in one transaction, so a crash neither loses nor doubles routing.
Woken by ingest after each commit; a slow poll is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from interlink.domain.ids import new_id
from interlink.routing.matching import endpoints_for, index_by_tenant
from interlink.storage.deliveries import Deliveries, NewDelivery
from interlink.storage.event_log import EventLog
from interlink.storage.management import Management

log = structlog.get_logger("interlink.router")

CURSOR = "router"


class Router:
    def __init__(
        self,
        events: EventLog,
        management: Management,
        deliveries: Deliveries,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        on_routed: Callable[[], None] | None = None,
    ) -> None:
        self._events = events
        self._management = management
        self._deliveries = deliveries
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._on_routed = on_routed
        self._wake = asyncio.Event()
        self._position = 0

    def wake(self) -> None:
        self._wake.set()

    async def route_once(self) -> int:
        """Routes the next batch of the log; returns how many events it covered."""
        batch = await self._events.read_after(self._position, self._batch_size)
        if not batch:
            return 0
        subs = index_by_tenant(
            await self._management.subscriptions_for(sorted({e.tenant_id for e in batch}))
        )
        new = [
            NewDelivery(new_id("delivery"), e.tenant_id, e.id, e.seq, endpoint_id)
            for e in batch
            for endpoint_id in endpoints_for(e.type, e.tenant_id, subs.get(e.tenant_id, ()))
        ]
        await self._deliveries.route(new, CURSOR, batch[-1].seq)
        self._position = batch[-1].seq
        if new and self._on_routed is not None:
            self._on_routed()
        return len(batch)

    async def run(self) -> None:
        self._position = await self._events.position(CURSOR)
        while True:
            self._wake.clear()
            try:
                routed = await self.route_once()
            except Exception:
                log.exception("router.batch_failed")
                routed = 0
                await asyncio.sleep(self._poll_interval)
            if routed >= self._batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
