"""Dead letters (bulk redrive as a job, its live progress, cancel) and the quarantine."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import ClientException
from litestar.response import Redirect

from interlink.api.context import ApiContext
from interlink.api.params import page
from interlink.api.schemas import JobOut
from interlink.console.web import PREFIX, Login, not_found, query, render, when
from interlink.domain.delivery import DeliveryStatus
from interlink.domain.jobs import ACTIVE, InvalidFilter, JobKind, JobStatus, RedriveFilter
from interlink.partners.pipeline import Stage
from interlink.partners.stage import AlreadyResolved
from interlink.storage.deliveries import DeliveryFilter
from interlink.storage.jobs import JobFinished
from interlink.storage.pagination import Page
from interlink.storage.quarantine import QuarantineFilter

_DEAD_FIELDS = ("endpoint_id", "type", "after", "before")


def _redrive_filter(q: dict[str, str]) -> RedriveFilter:
    try:
        return RedriveFilter(
            endpoint_id=q.get("endpoint_id"),
            type=q.get("type"),
            created_after=when("after", q.get("after")),
            created_before=when("before", q.get("before")),
        )
    except InvalidFilter as exc:
        raise ClientException(str(exc), status_code=422) from None


@get("/dead")
async def dead_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, cursor: str | None = None
) -> Response[str]:
    q = query(request, *_DEAD_FIELDS)
    f = _redrive_filter(q)
    where = DeliveryFilter(
        status=DeliveryStatus.DEAD.value,
        endpoint_id=f.endpoint_id,
        type=f.type,
        created_after=f.created_after,
        created_before=f.created_before,
    )
    items, nxt = await ctx.deliveries.find(login.tenant_id, where, page(50, cursor))
    return render(request, "dead.html", deliveries=items, q=q, next_cursor=nxt)


@post("/dead/redrive", status_code=303)
async def redrive(request: Request[Any, Any, Any], login: Login, ctx: ApiContext) -> Redirect:
    """Every dead delivery the filter matches, sent again by a paced job (POST /api/v1/jobs/
    redrive's own job): the page follows its progress."""
    form = await request.form()
    q = {n: str(form.get(n) or "").strip() for n in _DEAD_FIELDS if form.get(n)}
    where = _redrive_filter(q)
    if (
        where.endpoint_id
        and await ctx.management.get_endpoint(login.tenant_id, where.endpoint_id) is None
    ):
        raise not_found("endpoint", where.endpoint_id)
    rate = min(ctx.settings.job_rate_default, ctx.settings.job_rate_max)
    job = await ctx.jobs.create(login.tenant_id, JobKind.REDRIVE, where, rate)
    ctx.job_created()
    return Redirect(f"{PREFIX}/jobs/{job.id}", status_code=303)


async def _job(ctx: ApiContext, login: Login, job_id: str) -> JobOut:
    job = await ctx.jobs.get(login.tenant_id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return JobOut.of(job, time.time())


def _progress(job: JobOut) -> int:
    if job.status == JobStatus.SUCCEEDED.value:
        return 100
    if not job.total:
        return 0
    return min(100, round(100 * job.done / job.total))


def _running(job: JobOut) -> bool:
    return job.status in {s.value for s in ACTIVE}


@get("/jobs/{job_id:str}")
async def job_page(
    request: Request[Any, Any, Any], job_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    job = await _job(ctx, login, job_id)
    return render(request, "job.html", job=job, percent=_progress(job), running=_running(job))


@get("/jobs/{job_id:str}/progress")
async def job_progress(
    request: Request[Any, Any, Any], job_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    """The progress bar alone, polled by the job page until the job ends."""
    job = await _job(ctx, login, job_id)
    return render(
        request, "_job_progress.html", job=job, percent=_progress(job), running=_running(job)
    )


@post("/jobs/{job_id:str}/cancel", status_code=303)
async def cancel_job(job_id: str, login: Login, ctx: ApiContext) -> Redirect:
    try:
        job = await ctx.jobs.cancel(login.tenant_id, job_id)
    except JobFinished:
        job = None  # finished meanwhile: its page says how
        await _job(ctx, login, job_id)
    else:
        if job is None:
            raise not_found("job", job_id)
    return Redirect(f"{PREFIX}/jobs/{job_id}", status_code=303)


@get("/quarantine")
async def quarantine_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, cursor: str | None = None
) -> Response[str]:
    q = query(request, "stage", "status", "source_id")
    status = q.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise ClientException("status must be open, resolved or all", status_code=400)
    stage = q.get("stage")
    if stage is not None and stage not in {s.value for s in Stage}:
        raise ClientException(f"stage must be one of {', '.join(s.value for s in Stage)}")
    where = QuarantineFilter(
        status=None if status == "all" else status, stage=stage, source_id=q.get("source_id")
    )
    items, nxt = await ctx.quarantine.find(login.tenant_id, where, page(50, cursor))
    return render(
        request,
        "quarantine.html",
        entries=items,
        q={**q, "status": status},
        stages=[s.value for s in Stage],
        next_cursor=nxt,
        results=[],
    )


@post("/quarantine/reprocess", status_code=200)
async def reprocess(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext
) -> Response[str]:
    """The chosen entries through their source's kit as it is now (after a fix), one by one,
    as POST /api/v1/quarantine/{id}/reprocess does; the page lists what became of each."""
    ids = [str(i) for i in (await request.form()).getall("entry_id", [])][:100]
    results: list[tuple[str, str]] = []
    for entry_id in ids:
        try:
            done = await ctx.normalization.reprocess(login.tenant_id, entry_id)
        except AlreadyResolved:
            results.append((entry_id, "already resolved"))
            continue
        if done is None:
            results.append((entry_id, "not found"))
        elif done.quarantined:
            results.append((entry_id, f"quarantined again: {done.quarantined[0].reason}"))
        else:
            results.append((entry_id, f"normalized: {len(done.appended)} event(s) appended"))
    where = QuarantineFilter(status="open")
    items, nxt = await ctx.quarantine.find(login.tenant_id, where, Page(limit=50))
    return render(
        request,
        "quarantine.html",
        entries=items,
        q={"status": "open"},
        stages=[s.value for s in Stage],
        next_cursor=nxt,
        results=results,
    )
