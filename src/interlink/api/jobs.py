"""Bulk jobs: redrive dead deliveries and replay events, tracked, paced and cancellable."""

from __future__ import annotations

import time

from litestar import Controller, get, post
from litestar.exceptions import ClientException, ValidationException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import Unprocessable, found, instant, page
from interlink.api.schemas import Instant, JobOut, Listing, RedriveIn, ReplayJobIn
from interlink.domain.jobs import InvalidFilter, JobKind, JobStatus, RedriveFilter, ReplayFilter
from interlink.storage.jobs import JobFinished


def instant_or_epoch(name: str, value: Instant | None) -> float | None:
    if isinstance(value, int | float):
        return float(value)  # its bounds are the schema's, checked as the body was decoded
    return instant(name, value)


def job_rate(ctx: ApiContext, asked: float | None, default: float | None = None) -> float:
    most = ctx.settings.job_rate_max
    if asked is None:
        return min(default or ctx.settings.job_rate_default, most)
    if asked > most:
        raise Unprocessable(f"rate must be at most {most:g} items per second")
    return asked


def _one_of(name: str, value: str | None, allowed: type[JobStatus] | type[JobKind]) -> None:
    if value is not None and value not in {m.value for m in allowed}:
        raise ValidationException(f"{name} must be one of {', '.join(m.value for m in allowed)}")


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]

    @post("/redrive", status_code=202, summary="Send dead deliveries again, in bulk, paced")
    async def redrive(self, data: RedriveIn, principal: Principal, ctx: ApiContext) -> JobOut:
        tenant_id = require_tenant(principal)
        try:
            where = RedriveFilter(
                endpoint_id=data.endpoint_id,
                type=data.type,
                created_after=instant_or_epoch("after", data.after),
                created_before=instant_or_epoch("before", data.before),
            )
        except InvalidFilter as exc:
            raise Unprocessable(str(exc)) from None
        rate = job_rate(ctx, data.rate)
        if data.endpoint_id is not None:
            found(
                await ctx.management.get_endpoint(tenant_id, data.endpoint_id),
                "endpoint",
                data.endpoint_id,
            )
        job = await ctx.jobs.create(tenant_id, JobKind.REDRIVE, where, rate)
        ctx.job_created()
        return JobOut.of(job, time.time())

    @post("/replay", status_code=202, summary="Send events again to one endpoint, paced")
    async def replay(self, data: ReplayJobIn, principal: Principal, ctx: ApiContext) -> JobOut:
        tenant_id = require_tenant(principal)
        try:
            where = ReplayFilter(
                event_ids=tuple(dict.fromkeys(data.event_ids or ())),
                type=data.type,
                source_id=data.source_id,
                received_after=instant_or_epoch("after", data.after),
                received_before=instant_or_epoch("before", data.before),
            )
        except InvalidFilter as exc:
            raise Unprocessable(str(exc)) from None
        rate = job_rate(ctx, data.rate)
        found(
            await ctx.management.get_endpoint(tenant_id, data.endpoint_id),
            "endpoint",
            data.endpoint_id,
        )
        if data.source_id is not None:  # another tenant's source is not found, as everywhere
            found(
                await ctx.management.get_source(data.source_id, tenant_id),
                "source",
                data.source_id,
            )
        if where.event_ids:
            known = await ctx.events.known(tenant_id, where.event_ids)
            missing = [e for e in where.event_ids if e not in known]
            if missing:
                shown = ", ".join(repr(e) for e in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise ClientException(f"no event {shown}{more}", status_code=422)
        job = await ctx.jobs.create(
            tenant_id, JobKind.REPLAY, where, rate, endpoint_id=data.endpoint_id
        )
        ctx.job_created()
        return JobOut.of(job, time.time())

    @get("/", summary="List jobs, newest first")
    async def list_(
        self,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
        status: str | None = None,
        kind: str | None = None,
    ) -> Listing:
        _one_of("status", status, JobStatus)
        _one_of("kind", kind, JobKind)
        items, nxt = await ctx.jobs.find(
            require_tenant(principal),
            page(limit, cursor),
            status=None if status is None else JobStatus(status),
            kind=None if kind is None else JobKind(kind),
        )
        now = time.time()
        return Listing([JobOut.of(j, now) for j in items], nxt)

    @get("/{job_id:str}", summary="Get a job and its progress")
    async def get_(self, job_id: str, principal: Principal, ctx: ApiContext) -> JobOut:
        job = found(await ctx.jobs.get(require_tenant(principal), job_id), "job", job_id)
        return JobOut.of(job, time.time())

    @post("/{job_id:str}/cancel", status_code=200, summary="Stop a job after its current batch")
    async def cancel(self, job_id: str, principal: Principal, ctx: ApiContext) -> JobOut:
        try:
            job = await ctx.jobs.cancel(require_tenant(principal), job_id)
        except JobFinished as exc:
            raise ClientException(str(exc), status_code=409) from None
        return JobOut.of(found(job, "job", job_id), time.time())
