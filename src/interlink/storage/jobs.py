"""Jobs: bulk redrive and replay, leased to a runner and worked through in steps.

Each step is one transaction that moves a batch of items (deliveries redriven, events replayed)
together with the job's cursor and counts, and only while the runner's lease on the job holds
and the job has not been cancelled. So a restarted or replaced runner resumes after the last
committed batch: nothing is done twice, nothing skipped.

A step reads its items from a bounded window of the job's index (dead deliveries by tenant or
endpoint, the tenant's events by id) and filters within it, so a filter that matches little
costs a number of short steps rather than one long scan.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.erasure import matches
from interlink.domain.ids import new_id
from interlink.domain.jobs import (
    ACTIVE,
    ErasureFilter,
    Job,
    JobFilter,
    JobKind,
    JobStatus,
    RedriveFilter,
    ReplayFilter,
)
from interlink.domain.rate_limit import TokenBucket
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries, DeliveryFilter, delivery_conditions
from interlink.storage.erasure import erase_events
from interlink.storage.event_log import EventFilter, event_conditions
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.ports import DELIVERIES_CHANNEL, ERROR_CHARS
from interlink.storage.tables import deliveries, endpoints, events, jobs, sources

# Rows of the job's index one step looks at, whatever its filter matches among them.
SCAN_WINDOW = 2000


class JobLost(Exception):
    """The job was cancelled, or its lease lapsed and another runner holds it now."""


class JobImpossible(Exception):
    """The job cannot go on: the endpoint it replays to was deleted."""


class JobFinished(Exception):
    """The job is over already: it cannot be cancelled."""


class Step(msgspec.Struct, frozen=True):
    job: Job
    queued: int  # items handed to the dispatcher by this step


_ACTIVE: sa.BindParameter[list[str]] = sa.bindparam(
    "active_statuses", sorted(s.value for s in ACTIVE), expanding=True, literal_execute=True
)
_DEAD: sa.ColumnElement[str] = sa.literal_column("'dead'")


_FILTERS: dict[JobKind, type[JobFilter]] = {
    JobKind.REDRIVE: RedriveFilter,
    JobKind.REPLAY: ReplayFilter,
    JobKind.ERASURE: ErasureFilter,
}


def _filter(kind: JobKind, raw: Any) -> JobFilter:
    return msgspec.convert(raw, _FILTERS[kind])


def _job(row: Any) -> Job:
    kind = JobKind(row.kind)
    return Job(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=kind,
        status=JobStatus(row.status),
        filter=_filter(kind, row.filter),
        endpoint_id=row.endpoint_id,
        rate=row.rate,
        total=row.total,
        done=row.done,
        skipped=row.skipped,
        cursor=row.cursor,
        cursor_end=row.cursor_end,
        bucket=None if row.bucket is None else msgspec.convert(row.bucket, TokenBucket),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_error=row.last_error,
    )


def _held(job: Job, owner: str) -> list[sa.ColumnElement[bool]]:
    """The job is still ours and where we left it: running, under our lease, at our cursor."""
    return [
        jobs.c.id == job.id,
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.lease_owner == owner,
        jobs.c.cursor.is_not_distinct_from(job.cursor),
        jobs.c.done == job.done,
    ]


class _Items(msgspec.Struct, frozen=True):
    """How a job finds its items: an id column to walk, and the filter over it."""

    columns: list[sa.ColumnElement[Any]]  # the id to walk first, then what the work needs
    window: list[sa.ColumnElement[bool]]  # served by an index ordered by the id
    match: list[sa.ColumnElement[bool]] | None  # the rest of the filter, if any

    @property
    def id_column(self) -> sa.ColumnElement[Any]:
        return self.columns[0]


def _items(job: Job) -> _Items:
    f = job.filter
    if isinstance(f, RedriveFilter):
        window = [deliveries.c.tenant_id == job.tenant_id, deliveries.c.status == _DEAD]
        if f.endpoint_id:
            window.append(deliveries.c.endpoint_id == f.endpoint_id)
        match = None
        if f.type or f.created_after is not None or f.created_before is not None:
            where = DeliveryFilter(
                type=f.type, created_after=f.created_after, created_before=f.created_before
            )
            match = delivery_conditions(job.tenant_id, where)
        return _Items([deliveries.c.id], window, match)
    if isinstance(f, ErasureFilter):
        # Which of them hold the subject's value is decided on their data, in Python
        # (domain/erasure.py): the SQL narrows by source and time only.
        narrowed = EventFilter(
            source_id=f.source_id,
            received_after=f.received_after,
            received_before=f.received_before,
        )
        erasure_match = None
        if f.source_id or f.received_after is not None or f.received_before is not None:
            erasure_match = event_conditions(job.tenant_id, narrowed)
        return _Items(
            [events.c.id, events.c.data], [events.c.tenant_id == job.tenant_id], erasure_match
        )
    window = [events.c.tenant_id == job.tenant_id]
    if f.event_ids:
        window.append(events.c.id.in_(list(f.event_ids)))
    # A partner event of a source with a kit is never delivered as it came (its canonical
    # events are): replaying those is skipping them.
    match = [
        sa.or_(
            events.c.origin != "partner",
            events.c.source_id.not_in(sa.select(sources.c.id).where(sources.c.kit.is_not(None))),
        )
    ]
    if f.type or f.source_id or f.received_after is not None or f.received_before is not None:
        where_events = EventFilter(
            type=f.type,
            source_id=f.source_id,
            received_after=f.received_after,
            received_before=f.received_before,
        )
        match += event_conditions(job.tenant_id, where_events)
    return _Items([events.c.id, events.c.seq, events.c.key], window, match)


class Jobs:
    def __init__(self, db: Database, deliveries: Deliveries) -> None:
        self.db = db
        self._deliveries = deliveries

    # the API ------------------------------------------------------------------------------------

    async def create(
        self,
        tenant_id: str,
        kind: JobKind,
        where: JobFilter,
        rate: float,
        endpoint_id: str | None = None,
    ) -> Job:
        now = time.time()
        row = {
            "id": new_id("job"),
            "tenant_id": tenant_id,
            "kind": kind.value,
            "status": JobStatus.QUEUED.value,
            "filter": msgspec.to_builtins(where),
            "endpoint_id": endpoint_id,
            "rate": rate,
            "done": 0,
            "skipped": 0,
            # A queued job's lease has lapsed already: the first runner to look takes it.
            "lease_until": now,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as conn:
            await conn.execute(jobs.insert().values(row))
        job = await self.get(tenant_id, row["id"])
        assert job is not None
        return job

    async def get(self, tenant_id: str, job_id: str) -> Job | None:
        query = jobs.select().where(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _job(row)

    async def find(
        self,
        tenant_id: str,
        page: Page,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
    ) -> tuple[list[Job], str | None]:
        query = jobs.select().where(jobs.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if kind is not None:
            query = query.where(jobs.c.kind == kind.value)
        return await fetch_page(self.db, query, jobs.c.id, page, _job)

    async def cancel(self, tenant_id: str, job_id: str) -> Job | None:
        """Stops the job after the batch in hand; raises JobFinished if it is over already."""
        now = time.time()
        async with self.db.write() as conn:
            result = await conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job_id, jobs.c.tenant_id == tenant_id, jobs.c.status.in_(_ACTIVE)
                )
                .values(
                    status=JobStatus.CANCELLED.value,
                    finished_at=now,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
        job = await self.get(tenant_id, job_id)
        if job is not None and result.rowcount == 0:
            raise JobFinished(f"the job is {job.status.value} already")
        return job

    # the runner ---------------------------------------------------------------------------------

    async def claim(self, owner: str, now: float, limit: int, lease_seconds: float) -> list[Job]:
        """Leases up to ``limit`` jobs that are queued or whose runner's lease has lapsed."""
        claimable = [jobs.c.status.in_(_ACTIVE), jobs.c.lease_until <= now]
        pick = sa.select(jobs.c.id).where(*claimable).order_by(jobs.c.created_at).limit(limit)
        if not self.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        async with self.db.write() as conn:
            ids = [r.id for r in await conn.execute(pick)]
            if not ids:
                return []
            await conn.execute(
                jobs.update()
                .where(jobs.c.id.in_(ids), *claimable)
                .values(
                    status=JobStatus.RUNNING.value,
                    lease_owner=owner,
                    lease_until=now + lease_seconds,
                    started_at=sa.func.coalesce(jobs.c.started_at, now),
                    updated_at=now,
                )
            )
            rows = await conn.execute(
                jobs.select().where(jobs.c.id.in_(ids), jobs.c.lease_owner == owner)
            )
            return [_job(r) for r in rows]

    async def count(self, job: Job, owner: str, now: float) -> Job:
        """Counts the job's items and fixes the last one it will take, once, when it starts;
        items that come to match later (a delivery dying after this) are not chased."""
        items = _items(job)
        count = sa.select(sa.func.count(), sa.func.max(items.id_column)).where(
            *items.window, *(items.match or ())
        )
        async with self.db.read() as conn:
            total, last = (await conn.execute(count)).one()
        values: dict[str, Any] = {"total": int(total), "cursor_end": last, "updated_at": now}
        if not total:
            values.update(_finished(JobStatus.SUCCEEDED, now))
        async with self.db.write() as conn:
            await self._cas(conn, job, owner, values)
        return msgspec.structs.replace(
            job,
            total=int(total),
            cursor_end=last,
            status=JobStatus.SUCCEEDED if not total else job.status,
        )

    async def step(
        self,
        job: Job,
        owner: str,
        limit: int,
        bucket: TokenBucket,
        now: float,
        lease_seconds: float,
    ) -> Step:
        """Works through the next ``limit`` items, at most, and moves the cursor past them."""
        assert job.cursor_end is not None and job.total is not None
        items = _items(job)
        after = [items.id_column <= job.cursor_end]
        if job.cursor is not None:
            after.append(items.id_column > job.cursor)
        # Without more to the filter than its index, the window is the batch.
        size = limit if items.match is None else SCAN_WINDOW
        window_query = (
            sa.select(*items.columns)
            .where(*items.window, *after)
            .order_by(items.id_column)
            .limit(size)
        )
        async with self.db.write() as conn:
            if job.kind is JobKind.REPLAY:
                await self._check_target(conn, job)
            window = list(await conn.execute(window_query))
            picked = window
            if window and items.match is not None:
                picked = list(
                    await conn.execute(
                        sa.select(*items.columns)
                        .where(items.id_column.in_([r[0] for r in window]), *items.match)
                        .order_by(items.id_column)
                        .limit(limit)
                    )
                )
            queued = await self._work(conn, job, picked, now)
            if queued and not self.db.is_sqlite:  # dispatchers in other processes: a hint
                await conn.execute(sa.select(sa.func.pg_notify(DELIVERIES_CHANNEL, "")))
            # Past the last item taken when the batch is full; else past the whole window.
            cursor = picked[-1][0] if len(picked) == limit else (window[-1][0] if window else None)
            finished = (
                not window
                or cursor == job.cursor_end
                or (len(window) < size and len(picked) < limit)
            )
            done = job.done + len(picked)
            values: dict[str, Any] = {
                "cursor": cursor or job.cursor,
                "done": done,
                "skipped": job.skipped + len(picked) - queued,
                # Items matching after the count (dead since) are taken too: total follows.
                "total": max(job.total, done),
                "bucket": msgspec.to_builtins(bucket),
                "lease_until": now + lease_seconds,
                "updated_at": now,
            }
            if finished:
                values.update(_finished(JobStatus.SUCCEEDED, now), total=done)
            await self._cas(conn, job, owner, values)
        return Step(
            msgspec.structs.replace(
                job,
                cursor=values["cursor"],
                done=values["done"],
                skipped=values["skipped"],
                total=values["total"],
                bucket=bucket,
                status=JobStatus.SUCCEEDED if finished else job.status,
            ),
            queued,
        )

    async def _check_target(self, conn: AsyncConnection, job: Job) -> None:
        live = await conn.execute(
            sa.select(endpoints.c.id).where(
                endpoints.c.id == job.endpoint_id,
                endpoints.c.tenant_id == job.tenant_id,
                endpoints.c.deleted_at.is_(None),
            )
        )
        if live.first() is None:
            raise JobImpossible(f"the endpoint '{job.endpoint_id}' was deleted")

    async def _work(self, conn: AsyncConnection, job: Job, picked: list[Any], now: float) -> int:
        if isinstance(job.filter, ErasureFilter):
            f = job.filter
            matched = [r[0] for r in picked if matches(job.tenant_id, f.path, f.value_digest, r[1])]
            await erase_events(conn, job.tenant_id, matched, now)
            return len(matched)  # the rest of the batch is ``skipped``: scanned, not theirs
        if job.kind is JobKind.REDRIVE:
            return await self._deliveries.redrive_dead(conn, [r[0] for r in picked], now)
        assert job.endpoint_id is not None
        batch = [(r[0], int(r[1]), r[2]) for r in picked]
        return await self._deliveries.replay_to(conn, job.tenant_id, batch, job.endpoint_id, now)

    async def _cas(
        self, conn: AsyncConnection, job: Job, owner: str, values: dict[str, Any]
    ) -> None:
        result = await conn.execute(jobs.update().where(*_held(job, owner)).values(**values))
        if result.rowcount == 0:
            raise JobLost(job.id)  # rolls back the batch with it

    async def record_error(
        self, job: Job, owner: str, error: str, now: float, *, final: bool
    ) -> None:
        """Keeps the error of a failed step; a ``final`` one fails the job."""
        values: dict[str, Any] = {"last_error": error[:ERROR_CHARS], "updated_at": now}
        if final:
            values.update(_finished(JobStatus.FAILED, now))
        async with self.db.write() as conn:
            await self._cas(conn, job, owner, values)

    async def release_all_leases(self, now: float) -> int:
        """At start-up of the only process on the database: its jobs resume at once."""
        async with self.db.write() as conn:
            result = await conn.execute(
                jobs.update()
                .where(jobs.c.status == JobStatus.RUNNING.value)
                .values(lease_owner=None, lease_until=now)
            )
        return int(result.rowcount)


def _finished(status: JobStatus, now: float) -> dict[str, Any]:
    return {
        "status": status.value,
        "finished_at": now,
        "lease_owner": None,
        "lease_until": None,
    }
