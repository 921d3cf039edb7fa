"""A source's reconciliation: its settings, a run now, and the history of its runs."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, get, post, put
from litestar.exceptions import ClientException, ServiceUnavailableException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import Unprocessable, found, page
from interlink.api.schemas import Id, Listing, Url, iso
from interlink.delivery.outbound_guard import BlockedDestination, check_url
from interlink.partners.reconciliation import AlreadyRunning, NotReconcilable, Reconciliation
from interlink.storage.reconciliation import ReconcilerSettings, Run

MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 7 * 86400.0


class ReconcilerIn(msgspec.Struct, forbid_unknown_fields=True):
    connection_id: Id
    api_url: Url  # the partner API's base URL; the kit's listing path is under it
    interval_seconds: Annotated[
        float, msgspec.Meta(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)
    ] = 3600.0
    enabled: bool = True


class ReconcilerOut(msgspec.Struct):
    source_id: str
    connection_id: str
    api_url: str
    interval_seconds: float
    enabled: bool
    next_run_at: str | None
    running: bool

    @classmethod
    def of(cls, s: ReconcilerSettings) -> ReconcilerOut:
        now = time.time()  # a lease held by a process that died expires: not running then
        return cls(
            s.source_id,
            s.connection_id,
            s.api_url,
            s.interval_seconds,
            s.enabled,
            iso(s.next_run_at),
            s.lease_until is not None and s.lease_until > now,
        )


class RunOut(msgspec.Struct):
    id: str
    source_id: str
    trigger: str
    status: str
    since: str | None
    started_at: str | None
    finished_at: str | None
    pulled: int
    missing: int
    corrected: int
    unchanged: int
    conflicts: int
    errors: int
    emitted: int
    superseded: int
    error: str | None

    @classmethod
    def of(cls, r: Run) -> RunOut:
        d = r.drift
        return cls(
            r.id,
            r.source_id,
            r.trigger,
            r.status,
            iso(r.since),
            iso(r.started_at),
            iso(r.finished_at),
            d.pulled,
            d.missing,
            d.corrected,
            d.unchanged,
            d.conflicts,
            d.errors,
            d.emitted,
            d.superseded,
            r.error,
        )


def _reconciliation(ctx: ApiContext) -> Reconciliation:
    if ctx.reconciliation is None:
        raise ServiceUnavailableException("reconciliation is not available in this process")
    return ctx.reconciliation


class ReconciliationController(Controller):
    path = "/api/v1/sources/{source_id:str}"
    tags = ["reconciliation"]

    @put(
        "/reconciler", summary="Set the source's reconciliation: partner API, connection, interval"
    )
    async def put_settings(
        self, source_id: str, data: ReconcilerIn, principal: Principal, ctx: ApiContext
    ) -> ReconcilerOut:
        tenant_id = require_tenant(principal)
        rec = _reconciliation(ctx)
        source = found(await ctx.management.get_source(source_id, tenant_id), "source", source_id)
        kit = ctx.kits.get(source.kit) if source.kit else None
        if kit is None or kit.reconciler is None:
            raise Unprocessable(
                f"source '{source_id}': its partner kit declares no reconciler"
                if kit
                else f"source '{source_id}' names no installed partner kit"
            )
        try:
            check_url(data.api_url, ctx.outbound)
        except (BlockedDestination, ValueError) as exc:
            raise Unprocessable(f"api_url: {exc}") from None
        tokens = ctx.tokens
        if tokens is None or await tokens.connections.get(tenant_id, data.connection_id) is None:
            raise Unprocessable(f"no connection '{data.connection_id}'")
        settings = await rec.store.put(
            tenant_id,
            source_id,
            connection_id=data.connection_id,
            api_url=data.api_url,
            interval_seconds=data.interval_seconds,
            enabled=data.enabled,
        )
        return ReconcilerOut.of(settings)

    @get("/reconciler", summary="Get the source's reconciliation settings")
    async def get_settings(
        self, source_id: str, principal: Principal, ctx: ApiContext
    ) -> ReconcilerOut:
        settings = found(
            await _reconciliation(ctx).store.get(require_tenant(principal), source_id),
            "reconciler of source",
            source_id,
        )
        return ReconcilerOut.of(settings)

    @post(
        "/reconciliations",
        status_code=201,
        summary="Reconcile now: pull the partner's state, emit what is missing; the run's counts",
    )
    async def run_now(self, source_id: str, principal: Principal, ctx: ApiContext) -> RunOut:
        tenant_id = require_tenant(principal)
        rec = _reconciliation(ctx)
        found(await ctx.management.get_source(source_id, tenant_id), "source", source_id)
        try:
            run = await rec.run_source(tenant_id, source_id, "api")
        except NotReconcilable as exc:
            raise Unprocessable(str(exc)) from None
        except AlreadyRunning as exc:
            raise ClientException(str(exc), status_code=409) from None
        return RunOut.of(run)

    @get("/reconciliations", summary="The source's reconciliation runs, newest first")
    async def runs(
        self,
        source_id: str,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Listing:
        tenant_id = require_tenant(principal)
        found(await ctx.management.get_source(source_id, tenant_id), "source", source_id)
        items, nxt = await _reconciliation(ctx).store.runs(
            tenant_id, source_id, page(limit, cursor)
        )
        return Listing([RunOut.of(r) for r in items], nxt)
