"""The jobs repository on SQLite and on PostgreSQL (a fresh, migrated database per test;
skipped without INTERLINK_TEST_POSTGRES_URL, a failure in CI): leases, steps that move items
and cursor together, resumption, cancel, and the dead-letter index the steps walk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import app_url

from interlink.domain.delivery import AttemptOutcome, AttemptResult, DeliveryStatus, decide
from interlink.domain.ids import new_id
from interlink.domain.jobs import JobKind, JobStatus, RedriveFilter, ReplayFilter
from interlink.domain.models import Event
from interlink.domain.rate_limit import TokenBucket
from interlink.domain.retry import RetryPolicy
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries, DeliveryFilter
from interlink.storage.event_log import EventLog
from interlink.storage.jobs import JobFinished, JobLost, Jobs
from interlink.storage.management import Management
from interlink.storage.pagination import Page
from interlink.storage.ports import NewDelivery, Settled
from interlink.storage.secrets_box import SecretBox
from interlink.storage.tables import deliveries
from interlink.storage.tenancy import system_scope

BUCKET = TokenBucket(0.0, 0.0)
LEASE = 30.0


@dataclass
class Store:
    url: str
    db: Database
    events: EventLog
    deliveries: Deliveries
    management: Management
    jobs: Jobs
    tenant: str
    endpoint: str


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    # As in production on PostgreSQL: the owner migrates, the application role (which row-level
    # security binds) works, here in the system scope, as the job runner does.
    migration_url = url = f"sqlite:///{tmp_path}/jobs.db"
    if request.param == "postgres":
        migration_url = request.getfixturevalue("postgres_database")
        url = app_url(migration_url)
    await asyncio.to_thread(migrate.upgrade, migration_url)
    db = Database(url)
    deliveries, management = Deliveries(db), Management(db, SecretBox([SecretBox.new_key()]))
    with system_scope("jobs storage suite"):
        tenant, _ = await management.create_tenant("t")
        ep = await management.create_endpoint(
            tenant.id,
            url="http://127.0.0.1:9/x",
            description="",
            secret="whsec_" + "A" * 40,
            retry=RetryPolicy(schedule=(0,)),
            timeout_seconds=5,
        )
        yield Store(
            url, db, EventLog(db), deliveries, management, Jobs(db, deliveries), tenant.id, ep.id
        )
    await db.close()


def _event(tenant: str, type: str, key: str | None = None) -> Event:
    return Event(
        id=new_id("event"),
        tenant_id=tenant,
        source_id="src_1",
        idempotency_key=new_id("event"),
        type=type,
        key=key,
        received_at=time.time(),
        occurred_at=None,
        data=b"{}",
        raw=b"{}",
        headers={},
    )


async def dead(s: Store, n: int, type: str = "booking.created", endpoint: str = "") -> list[str]:
    """``n`` deliveries that died the way the dispatcher kills them: one failed attempt."""
    batch = [_event(s.tenant, type) for _ in range(n)]
    await s.events.append(batch)
    stored = [await s.events.get(s.tenant, e.id) for e in batch]
    new = [
        NewDelivery(new_id("delivery"), s.tenant, e.id, e.seq, endpoint or s.endpoint)
        for e in stored
        if e
    ]
    await s.deliveries.route(new, "router", 0)
    claimed = await s.deliveries.claim_due(time.time() + 1, n, 30)
    failed = AttemptResult(AttemptOutcome.FAILED, 500, 1.0)
    settled = [
        Settled(c, time.time(), failed, decide(0, failed, RetryPolicy(schedule=(0,))))
        for c in claimed
    ]
    await s.deliveries.settle(settled)
    assert len(claimed) == n
    return sorted(d.id for d in new)


async def statuses(s: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for by_status in (await s.deliveries.counts()).values():
        for status, n in by_status.items():
            out[status] = out.get(status, 0) + n
    return out


async def test_a_job_is_leased_to_one_runner_and_passes_on_when_the_lease_lapses(
    store: Store,
) -> None:
    await dead(store, 5)
    job = await store.jobs.create(store.tenant, JobKind.REDRIVE, RedriveFilter(), rate=10)
    other = Jobs(Database(store.url), store.deliveries)
    try:
        now = time.time()
        got = await asyncio.gather(
            store.jobs.claim("a", now, 10, LEASE), other.claim("b", now, 10, LEASE)
        )
        assert sorted(len(g) for g in got) == [0, 1]  # exactly one runner has it
        holder, taker = ("a", other) if got[0] else ("b", store.jobs)
        held = (got[0] or got[1])[0]
        assert held.id == job.id and held.status is JobStatus.RUNNING and held.total is None
        held = await (store.jobs if holder == "a" else other).count(held, holder, now)
        assert held.total == 5 and held.cursor_end is not None
        assert await taker.claim("c", now + 1, 10, LEASE) == []  # held

        (taken,) = await taker.claim("c", now + LEASE + 1, 10, LEASE)  # lapsed
        assert taken.id == job.id and taken.started_at == held.started_at
        with pytest.raises(JobLost):  # the old holder's step is refused, its batch undone
            await store.jobs.step(held, holder, 2, BUCKET, time.time(), LEASE)
        assert await statuses(store) == {"dead": 5}
        step = await taker.step(taken, "c", 2, BUCKET, time.time(), LEASE)
        assert step.queued == 2 and step.job.done == 2
        assert await statuses(store) == {"dead": 3, "pending": 2}
    finally:
        await other.db.close()


async def test_steps_move_items_and_cursor_together_and_resume_where_they_stopped(
    store: Store,
) -> None:
    ids = await dead(store, 7)
    await store.jobs.create(store.tenant, JobKind.REDRIVE, RedriveFilter(), rate=10)
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    late = await dead(store, 2)  # dead after the job counted: not chased
    step = await store.jobs.step(job, "a", 3, BUCKET, time.time(), LEASE)
    assert (step.queued, step.job.done, step.job.cursor) == (3, 3, ids[2])

    # A new process: the job as stored, where the last step left it.
    assert await store.jobs.release_all_leases(time.time()) == 1
    (resumed,) = await store.jobs.claim("b", time.time(), 1, LEASE)
    assert (resumed.done, resumed.cursor, resumed.total) == (3, ids[2], 7)
    assert resumed.bucket == BUCKET
    while resumed.status is JobStatus.RUNNING:
        resumed = (await store.jobs.step(resumed, "b", 3, BUCKET, time.time(), LEASE)).job
    assert (resumed.status, resumed.done, resumed.total, resumed.skipped) == (
        JobStatus.SUCCEEDED,
        7,
        7,
        0,
    )
    stored = await store.jobs.get(store.tenant, resumed.id)
    assert stored is not None and stored.finished_at is not None
    assert await store.jobs.claim("c", time.time() + LEASE * 2, 1, LEASE) == []
    assert await statuses(store) == {"pending": 7, "dead": 2}
    still_dead, _ = await store.deliveries.find(
        store.tenant, DeliveryFilter(status="dead"), Page(limit=10)
    )
    assert sorted(d.id for d in still_dead) == late


async def test_a_filter_narrower_than_the_index_is_walked_in_windows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import interlink.storage.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "SCAN_WINDOW", 4)
    wanted: list[str] = []
    for _ in range(3):
        await dead(store, 3, "booking.created")
        wanted += await dead(store, 1, "invoice.paid")
    await store.jobs.create(
        store.tenant, JobKind.REDRIVE, RedriveFilter(type="invoice.paid"), rate=10
    )
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    assert job.total == 3
    steps = 0
    while job.status is JobStatus.RUNNING:
        job = (await store.jobs.step(job, "a", 10, BUCKET, time.time(), LEASE)).job
        steps += 1
    assert job.done == 3 and steps == 3  # a window of 4 rows per step, one match in each
    redriven, _ = await store.deliveries.find(
        store.tenant, DeliveryFilter(status="pending"), Page(limit=10)
    )
    assert sorted(d.id for d in redriven) == sorted(wanted)


async def test_cancel_stops_the_holder_and_a_finished_job_cannot_be_cancelled(
    store: Store,
) -> None:
    await dead(store, 4)
    created = await store.jobs.create(store.tenant, JobKind.REDRIVE, RedriveFilter(), rate=10)
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    job = (await store.jobs.step(job, "a", 1, BUCKET, time.time(), LEASE)).job
    assert await store.jobs.cancel("tnt_other", created.id) is None  # another tenant's: unseen
    cancelled = await store.jobs.cancel(store.tenant, created.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert cancelled.done == 1 and cancelled.finished_at is not None
    with pytest.raises(JobLost):
        await store.jobs.step(job, "a", 1, BUCKET, time.time(), LEASE)
    assert await statuses(store) == {"dead": 3, "pending": 1}
    with pytest.raises(JobFinished):
        await store.jobs.cancel(store.tenant, created.id)
    listed, _ = await store.jobs.find(store.tenant, Page(), status=JobStatus.CANCELLED)
    assert [j.id for j in listed] == [created.id]
    assert (await store.jobs.find("tnt_other", Page()))[0] == []


async def test_replay_steps_create_missing_deliveries_and_skip_those_in_flight(
    store: Store,
) -> None:
    await dead(store, 2, "invoice.paid")  # these events have deliveries to our endpoint
    other = await store.management.create_endpoint(
        store.tenant,
        url="http://127.0.0.1:9/y",
        description="",
        secret="whsec_" + "B" * 40,
        retry=RetryPolicy(),
        timeout_seconds=5,
    )
    fresh = [_event(store.tenant, "booking.created", key=f"b{i}") for i in range(3)]
    await store.events.append(fresh)
    # One delivery of the other endpoint is being sent right now: a replay leaves it alone.
    busy = await store.events.get(store.tenant, fresh[0].id)
    assert busy is not None
    await store.deliveries.route(
        [NewDelivery(new_id("delivery"), store.tenant, busy.id, busy.seq, other.id)], "router", 0
    )
    (in_flight,) = await store.deliveries.claim_due(time.time() + 1, 10, 300)

    await store.jobs.create(
        store.tenant, JobKind.REPLAY, ReplayFilter(type="booking.created"), 10, other.id
    )
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    assert job.total == 3
    step = await store.jobs.step(job, "a", 10, BUCKET, time.time(), LEASE)
    assert (step.queued, step.job.done, step.job.skipped) == (2, 3, 1)
    assert step.job.status is JobStatus.SUCCEEDED
    d = await store.deliveries.get(store.tenant, in_flight.delivery_id)
    assert d is not None and d.status == DeliveryStatus.IN_FLIGHT
    mine, _ = await store.deliveries.find(
        store.tenant, DeliveryFilter(endpoint_id=other.id), Page(limit=10)
    )
    assert len(mine) == 3  # one each, the busy one not doubled
    async with store.db.read() as conn:
        keys = await conn.execute(
            sa.select(deliveries.c.event_id, deliveries.c.key).where(
                deliveries.c.endpoint_id == other.id, deliveries.c.event_id != busy.id
            )
        )
        assert {r.key for r in keys} == {"b1", "b2"}  # created with the event's ordering key

    # By id, to our endpoint: redriven in place (the dead ones) or created.
    ids = tuple(sorted({fresh[1].id, fresh[2].id}))
    await store.jobs.create(
        store.tenant, JobKind.REPLAY, ReplayFilter(event_ids=ids), 10, store.endpoint
    )
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    step = await store.jobs.step(job, "a", 10, BUCKET, time.time(), LEASE)
    assert (step.queued, step.job.done, step.job.status) == (2, 2, JobStatus.SUCCEEDED)

    # The endpoint deleted mid-way: the job cannot go on.
    await store.jobs.create(store.tenant, JobKind.REPLAY, ReplayFilter(), 10, other.id)
    (job,) = await store.jobs.claim("a", time.time(), 1, LEASE)
    job = await store.jobs.count(job, "a", time.time())
    await store.management.delete_endpoint(store.tenant, other.id)
    from interlink.storage.jobs import JobImpossible

    with pytest.raises(JobImpossible, match="deleted"):
        await store.jobs.step(job, "a", 10, BUCKET, time.time(), LEASE)


async def test_the_dead_letter_view_is_served_by_the_dead_indexes(store: Store) -> None:
    if not store.db.is_sqlite:
        pytest.skip("PostgreSQL plans by table statistics; SQLite's planner is checked here")
    from interlink.storage.deliveries import delivery_conditions
    from interlink.storage.pagination import paginate
    from interlink.storage.tables import deliveries

    async def plan(where: DeliveryFilter) -> str:
        query = paginate(
            deliveries.select().where(*delivery_conditions(store.tenant, where)),
            deliveries.c.id,
            Page(),
        )
        sql = str(
            query.compile(store.db.engine.sync_engine, compile_kwargs={"literal_binds": True})
        )
        async with store.db.read() as conn:
            return " | ".join(
                str(r[3]) for r in await conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
            )

    by_tenant = await plan(DeliveryFilter(status="dead", type="invoice.paid", created_after=1.0))
    assert "USING INDEX ix_deliveries_dead_tenant" in by_tenant
    assert "SCAN events" not in by_tenant  # each delivery's event by its key
    by_endpoint = await plan(DeliveryFilter(status="dead", endpoint_id="ep_1", type="x"))
    assert "USING INDEX ix_deliveries_dead_endpoint" in by_endpoint
