"""Events and deliveries: what came in, what went out, and the operator's levers on them."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import ClientException, NotFoundException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import found, instant, page
from interlink.api.schemas import (
    AttemptOut,
    DeliveryOut,
    EventOut,
    Listing,
    ReplayIn,
    ReplayOut,
    iso,
)
from interlink.domain.delivery import DeliveryStatus
from interlink.domain.models import Event
from interlink.routing.filtering import FilterCache, routes_of
from interlink.routing.filtering import targets as filtered_targets
from interlink.storage.deliveries import DeliveryFilter, RetryRefused
from interlink.storage.event_log import EventFilter
from interlink.storage.ports import EventContent, LogEntry
from interlink.storage.segments import Segments


def event_out(e: Event) -> EventOut:
    return EventOut(
        id=e.id,
        source_id=e.source_id,
        type=e.type,
        key=e.key,
        idempotency_key=e.idempotency_key,
        received_at=iso(e.received_at),
        occurred_at=iso(e.occurred_at),
        data=msgspec.Raw(e.data),
        headers=e.headers,
        origin=e.origin,
        derived_from=e.derived_from,
        version=e.schema_version,
    )


class EventController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get("/", summary="List events, newest first")
    async def list_(
        self,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
        type: str | None = None,
        source_id: str | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> Listing:
        where = EventFilter(
            type=type,
            source_id=source_id,
            received_after=instant("after", after),
            received_before=instant("before", before),
        )
        items, nxt = await ctx.events.find(require_tenant(principal), where, page(limit, cursor))
        return Listing([event_out(e) for e in items], nxt)

    @get("/{event_id:str}", summary="Get an event with its data and kept headers")
    async def get_(self, event_id: str, principal: Principal, ctx: ApiContext) -> EventOut:
        event = await ctx.events.get(require_tenant(principal), event_id)
        if event is None:
            raise NotFoundException(f"no event '{event_id}'")
        return event_out(event)

    @post(
        "/{event_id:str}/replay",
        status_code=202,
        summary="Send an event again to its subscribed endpoints",
    )
    async def replay(
        self, event_id: str, principal: Principal, ctx: ApiContext, data: ReplayIn | None = None
    ) -> ReplayOut:
        tenant_id = require_tenant(principal)
        event = await ctx.events.get(tenant_id, event_id)
        if event is None:
            raise NotFoundException(f"no event '{event_id}'")
        source = await ctx.management.get_source(event.source_id, tenant_id)
        if event.origin == "partner" and source is not None and source.kit is not None:
            # A partner event of a kit's source is never delivered as it came: its canonical
            # events are (and are what to replay).
            raise ClientException(
                f"event '{event_id}' is normalized by the partner kit '{source.kit}': replay the "
                "canonical events made of it (its timeline lists them)",
                status_code=409,
            )
        if data is not None and data.endpoint_id:
            if await ctx.management.get_endpoint(tenant_id, data.endpoint_id) is None:
                raise NotFoundException(f"no endpoint '{data.endpoint_id}'")
            targets = [data.endpoint_id]
            routed_by: dict[str, str] = {}
        else:
            routed_by = await _subscribed(ctx, tenant_id, event)
            targets = list(routed_by)
        queued = await ctx.deliveries.replay(
            tenant_id, event.id, event.seq, targets, event.key, routed_by
        )
        return ReplayOut(event_id=event.id, queued=queued)


async def _subscribed(ctx: ApiContext, tenant_id: str, event: Event) -> dict[str, str]:
    """The endpoints the event goes to as routing would send it (types, then filters), each
    with the subscription whose transformation applies."""
    subs = await ctx.management.subscriptions_for([tenant_id])
    bodies = (await Segments(ctx.management).bodies([tenant_id]))[tenant_id]
    routes = routes_of(subs, bodies, FilterCache())
    entry = LogEntry(event.seq, event.id, tenant_id, event.type, event.key)
    content = EventContent(event.source_id, event.data, event.headers, event.occurred_at)
    return dict(filtered_targets(entry, routes, content, {}))


class DeliveryController(Controller):
    path = "/api/v1/deliveries"
    tags = ["deliveries"]

    @get(
        "/",
        summary="List deliveries, newest first (filter by status, endpoint, event, its type, time)",
    )
    async def list_(
        self,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
        status: str | None = None,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        type: str | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> Listing:
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise ClientException(
                f"status must be one of {', '.join(s.value for s in DeliveryStatus)}"
            )
        where = DeliveryFilter(
            status=status,
            endpoint_id=endpoint_id,
            event_id=event_id,
            type=type,
            created_after=instant("after", after),
            created_before=instant("before", before),
        )
        items, nxt = await ctx.deliveries.find(
            require_tenant(principal), where, page(limit, cursor)
        )
        return Listing([DeliveryOut.of(d) for d in items], nxt)

    @get("/{delivery_id:str}", summary="Get a delivery")
    async def get_(self, delivery_id: str, principal: Principal, ctx: ApiContext) -> DeliveryOut:
        delivery = found(
            await ctx.deliveries.get(require_tenant(principal), delivery_id),
            "delivery",
            delivery_id,
        )
        return DeliveryOut.of(delivery)

    @get("/{delivery_id:str}/attempts", summary="Every attempt of a delivery, first to last")
    async def attempts(self, delivery_id: str, principal: Principal, ctx: ApiContext) -> Listing:
        tenant_id = require_tenant(principal)
        if await ctx.deliveries.get(tenant_id, delivery_id) is None:
            raise NotFoundException(f"no delivery '{delivery_id}'")
        items = await ctx.deliveries.attempts(tenant_id, delivery_id)
        return Listing([AttemptOut.of(a) for a in items], None)

    @post(
        "/{delivery_id:str}/retry",
        status_code=202,
        summary="Send a delivery again now (dead ones included)",
    )
    async def retry(self, delivery_id: str, principal: Principal, ctx: ApiContext) -> DeliveryOut:
        try:
            delivery = await ctx.deliveries.retry(require_tenant(principal), delivery_id)
        except RetryRefused as exc:
            raise ClientException(str(exc), status_code=409) from None
        if delivery is None:
            raise NotFoundException(f"no delivery '{delivery_id}'")
        return DeliveryOut.of(delivery)
