"""``POST /api/v1/erasures``: remove a person's data from a tenant's events, as a tracked job.

The subject's value is turned into its digest here (domain/erasure.py) and never stored; the
job (kind ``erasure``: progress, ETA, cancel under /api/v1/jobs) redacts what matches
(storage/erasure.py), resumes after a crash from its cursor, and stays as the erasure record:
who asked (the key's id), when, the selector without its value, events scanned and erased.
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import post

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.jobs import instant_or_epoch, job_rate
from interlink.api.params import Unprocessable, found
from interlink.api.schemas import Id, Instant, JobOut, JobRate
from interlink.domain.erasure import MAX_VALUE_CHARS, InvalidSelector, digest, parse_path
from interlink.domain.jobs import ErasureFilter, InvalidFilter, JobKind

Path = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_VALUE_CHARS)] | int | float | bool


class ErasureIn(msgspec.Struct, forbid_unknown_fields=True):
    """Whose data to erase: the events whose data holds ``equals`` at ``path``."""

    path: Path  # data.guest.email
    equals: Value  # the subject's value there: never stored, only its digest
    source_id: Id | None = None
    after: Instant | None = None  # received at or after
    before: Instant | None = None  # received before
    rate: JobRate | None = None  # events scanned a second, at most


@post(
    "/api/v1/erasures",
    tags=["jobs"],
    status_code=202,
    summary="Erase a person's data from the tenant's events (a job: see /api/v1/jobs)",
)
async def create_erasure(data: ErasureIn, principal: Principal, ctx: ApiContext) -> JobOut:
    tenant_id = require_tenant(principal)
    try:
        where = ErasureFilter(
            path=parse_path(data.path),
            value_digest=digest(tenant_id, data.equals),
            source_id=data.source_id,
            received_after=instant_or_epoch("after", data.after),
            received_before=instant_or_epoch("before", data.before),
            requested_by=principal.key_id,
        )
    except (InvalidSelector, InvalidFilter) as exc:
        raise Unprocessable(str(exc)) from None
    if data.source_id is not None:
        found(await ctx.management.get_source(data.source_id, tenant_id), "source", data.source_id)
    # Scanning is cheap next to sending: by default as fast as a job may go.
    rate = job_rate(ctx, data.rate, default=ctx.settings.job_rate_max)
    job = await ctx.jobs.create(tenant_id, JobKind.ERASURE, where, rate)
    ctx.job_created()
    return JobOut.of(job, time.time())
