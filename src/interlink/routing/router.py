"""The router: follows the event log and creates deliveries for matching subscriptions.

Deliveries and the cursor move in one transaction, so a crash neither loses nor doubles routing.
Woken by ingest after each commit; a slow poll is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from interlink.domain.ids import new_id
from interlink.routing.filtering import Count, FilterCache, Route, needs_content, routes_of, targets
from interlink.routing.matching import index_by_tenant
from interlink.storage.management import Management
from interlink.storage.ports import CursorMoved, DeliveryQueue, LogEntry, LogWriter, NewDelivery
from interlink.storage.segments import Segments

log = structlog.get_logger("interlink.router")

CURSOR = "router"

# Changes made through another process reach this one's cache within this time.
SUBSCRIPTIONS_TTL = 2.0


class SubscriptionCache:
    """The tenants' subscriptions with their filters compiled (segments expanded), kept between
    batches: one query per change, not per batch. A segment's change bumps the same version."""

    def __init__(self, management: Management, ttl: float = SUBSCRIPTIONS_TTL) -> None:
        self._management = management
        self._segments = Segments(management)
        self._filters = FilterCache()
        self._ttl = ttl
        self._by_tenant: dict[str, list[Route]] = {}
        self._version = -1
        self._expires = 0.0

    async def for_tenants(self, tenant_ids: set[str]) -> dict[str, list[Route]]:
        now = time.monotonic()
        if self._version != self._management.routing_version or now >= self._expires:
            self._by_tenant.clear()
            self._version = self._management.routing_version
            self._expires = now + self._ttl
        missing = sorted(tenant_ids - self._by_tenant.keys())
        if missing:
            version = self._management.routing_version
            found = await self._load(missing)
            if version == self._management.routing_version:  # no change raced the query
                for tenant_id in missing:
                    self._by_tenant[tenant_id] = found.get(tenant_id, [])
            else:
                return found | {t: self._by_tenant[t] for t in tenant_ids - set(missing)}
        return self._by_tenant

    async def _load(self, tenant_ids: list[str]) -> dict[str, list[Route]]:
        subs = index_by_tenant(await self._management.subscriptions_for(tenant_ids))
        filtered = [t for t, ss in subs.items() if any(s.filter is not None for s in ss)]
        bodies = await self._segments.bodies(filtered) if filtered else {}
        return {t: routes_of(ss, bodies.get(t, {}), self._filters) for t, ss in subs.items()}


def _ignore(outcome: str, n: int) -> None:
    pass


class Router:
    def __init__(
        self,
        events: LogWriter,
        management: Management,
        deliveries: DeliveryQueue,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        on_routed: Callable[[], None] | None = None,
        on_deliveries: Callable[[set[str]], None] | None = None,
        normalize: Callable[[Sequence[LogEntry]], Awaitable[list[LogEntry]]] | None = None,
        count_filter: Count = _ignore,
    ) -> None:
        self._events = events
        self._subscriptions = SubscriptionCache(management)
        self._deliveries = deliveries
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._on_routed = on_routed
        self._on_deliveries = on_deliveries  # the endpoints a batch created deliveries for
        self._normalize = normalize
        self._count_filter = count_filter  # each filter evaluation's outcome (the metric)
        self._wake = asyncio.Event()
        self._position = 0

    def wake(self) -> None:
        self._wake.set()

    async def route_once(self) -> int:
        """Routes the next batch of the log; returns how many events it covered."""
        batch = await self._events.read_after(self._position, self._batch_size)
        if not batch:
            return 0
        # Events of sources with a partner kit are normalized first (partners/stage.py): their
        # canonical events come later in the log; the partner's own are not routed.
        routed = batch if self._normalize is None else await self._normalize(batch)
        routes = await self._subscriptions.for_tenants({e.tenant_id for e in routed})
        # Content (data, headers) is read only for events a filtered subscription's types match.
        wanted = [e for e in routed if needs_content(e, routes.get(e.tenant_id, ()))]
        contents = await self._events.contents(wanted) if wanted else {}
        counts: dict[str, int] = {}
        new = [
            NewDelivery(new_id("delivery"), e.tenant_id, e.id, e.seq, endpoint_id, e.key, sub_id)
            for e in routed
            for endpoint_id, sub_id in targets(
                e, routes.get(e.tenant_id, ()), contents.get(e.id), counts
            )
        ]
        try:
            await self._deliveries.route(new, CURSOR, batch[-1].seq, previous=self._position)
        except CursorMoved:
            # Another router took this batch: carry on from where it is now.
            self._position = await self._events.position(CURSOR)
            return len(batch)
        self._position = batch[-1].seq
        for outcome, n in counts.items():
            self._count_filter(outcome, n)
        if new and self._on_routed is not None:
            self._on_routed()
        if new and self._on_deliveries is not None:
            self._on_deliveries({d.endpoint_id for d in new})
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
