"""Time partitions and retention (storage/partitions.py, storage/maintenance.py, migration 0011).

PostgreSQL: the migration on a database with rows, dedupe across partitions, an insert far in
the future, retention dropping old days while appends go on, a partition without its policy
refused at start-up. SQLite: retention deletes the old log in bounded batches. Each PostgreSQL
test gets a fresh database (tests/conftest.py); skipped without INTERLINK_TEST_POSTGRES_URL, a
failure in CI.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import app_url, connect
from typer.testing import CliRunner

from interlink.cli import app
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.storage import migrate, partitions, rls
from interlink.storage.database import Database
from interlink.storage.event_log import EventLog
from interlink.storage.maintenance import Maintenance
from interlink.storage.tables import cursors, deliveries, events, idempotency_keys
from interlink.storage.tenancy import system_scope

DAY = partitions.DAY
TENANT = "tnt_growth"
SOURCE = "src_growth"


def event(received_at: float, key: str | None = None) -> Event:
    event_id = new_id("event")
    return Event(
        id=event_id,
        tenant_id=TENANT,
        source_id=SOURCE,
        idempotency_key=key or event_id,
        type="booking.created",
        key=None,
        received_at=received_at,
        occurred_at=None,
        data=b"{}",
        raw=b"{}",
        headers={},
    )


async def where_stored(db: Database, event_ids: list[str]) -> dict[str, str]:
    """Which partition holds each event."""
    query = sa.select(events.c.id, sa.literal_column("tableoid::regclass::text").label("part"))
    async with db.read() as conn:
        rows = await conn.execute(query.where(events.c.id.in_(event_ids)))
        return {r.id: r.part for r in rows}


async def delivery(db: Database, e: Event, seq: int, status: str) -> str:
    delivery_id = new_id("delivery")
    async with db.write() as conn:
        await conn.execute(
            deliveries.insert().values(
                id=delivery_id,
                tenant_id=e.tenant_id,
                event_id=e.id,
                event_seq=seq,
                endpoint_id="ep_growth",
                status=status,
                attempt_count=1,
                next_attempt_at=None if status in ("succeeded", "dead") else e.received_at,
                created_at=e.received_at,
                updated_at=e.received_at,
            )
        )
    return delivery_id


async def routed_to(db: Database, position: int) -> None:
    async with db.write() as conn:
        await conn.execute(cursors.delete())
        await conn.execute(cursors.insert().values(name="router", position=position))


@pytest.fixture
async def pg(postgres_database: str) -> AsyncIterator[tuple[Database, Database]]:
    """The application's database and the owner's, migrated to head, in the system scope."""
    await asyncio.to_thread(migrate.upgrade, postgres_database)
    app, owner = Database(app_url(postgres_database)), Database(postgres_database)
    with system_scope("test: partitions"):
        yield app, owner
    await app.close()
    await owner.close()


async def test_the_migration_keeps_the_rows_there_were(postgres_database: str) -> None:
    await asyncio.to_thread(migrate.upgrade, postgres_database, "0010")
    app = Database(app_url(postgres_database))
    now = time.time()
    before = [event(now - 40 * DAY + i) for i in range(50)] + [event(now - 5)]
    try:
        with system_scope("test: before 0011"):
            # As the previous version appended: its own ON CONFLICT on events.
            async with app.write() as conn:
                await conn.execute(events.insert(), [dict(_row(e)) for e in before])
                old_max = await conn.scalar(sa.select(sa.func.max(events.c.seq)))
        await asyncio.to_thread(migrate.upgrade, postgres_database)
        log = EventLog(app)
        with system_scope("test: after 0011"):
            got = await log.get(TENANT, before[0].id)
            assert got is not None and got.seq == 1 and got.received_at == before[0].received_at
            assert set((await where_stored(app, [e.id for e in before])).values()) == {
                "events_history"
            }
            # Keys from before and after the migration dedupe alike.
            again = event(now, key=before[3].idempotency_key)
            fresh = event(now)
            result = await log.append([again, fresh])
            assert result[0].duplicate and result[0].event_id == before[3].id
            assert not result[1].duplicate
            resend = await log.append([event(now + 1, key=fresh.idempotency_key)])
            assert resend[0].duplicate and resend[0].event_id == fresh.id
            stored = await log.get(TENANT, fresh.id)
            assert stored is not None and stored.seq == old_max + 1  # the log goes on
            assert await log.count() == len(before) + 1
    finally:
        await app.close()


def _row(e: Event) -> dict[str, object]:
    from interlink.storage.rows import event_row

    return event_row(e)


async def test_dedupe_is_exact_across_partitions(pg: tuple[Database, Database]) -> None:
    app, _ = pg
    log = EventLog(app)
    today = partitions.day_start(time.time()) + 2 * DAY  # the first daily partition
    first = event(today + 10, key="partner-evt-1")
    (stored,) = await log.append([first])
    assert not stored.duplicate
    for later in (today + DAY + 10, today + 5 * DAY, today + 400 * DAY, today - 400 * DAY):
        (again,) = await log.append([event(later, key="partner-evt-1")])
        assert again.duplicate and again.event_id == first.id
    # Two of one key in one batch, in different partitions: one stored.
    pair = [event(today + 20, key="partner-evt-2"), event(today + 3 * DAY, key="partner-evt-2")]
    out = await log.append(pair)
    assert [a.event_id for a in out] == [pair[0].id, pair[0].id]
    assert await log.count() == 2


async def test_an_insert_far_in_the_future_is_kept_and_moved_to_its_day(
    pg: tuple[Database, Database],
) -> None:
    app, owner = pg
    log = EventLog(app)
    far = event(time.time() + 3 * 365 * DAY)
    soon = next(p for p in await Maintenance(app, owner).layout("events") if p.upper > 1e300)
    near = event(soon.lower + DAY / 2)  # past the days made ahead
    await log.append([far, near])
    assert set((await where_stored(app, [far.id, near.id])).values()) == {"events_future"}
    seq = (await log.get(TENANT, near.id)).seq  # type: ignore[union-attr]

    report = await Maintenance(app, owner).run_once(now=soon.lower)
    assert partitions.day_name("events", soon.lower) in report.created
    places = await where_stored(app, [far.id, near.id])
    assert places == {
        far.id: "events_future",
        near.id: partitions.day_name("events", partitions.day_start(near.received_at)),
    }
    moved = await log.get(TENANT, near.id)
    assert moved is not None and moved.seq == seq
    async with app.read() as conn:
        assert await rls.problems(conn) == []  # the new partitions have their policy


async def test_retention_drops_old_days_while_appends_go_on(
    pg: tuple[Database, Database],
) -> None:
    app, owner = pg
    log = EventLog(app)
    real_now = time.time()
    old = [event(real_now - 30 * DAY + i) for i in range(300)]
    appended = await log.append(old)
    assert not any(a.duplicate for a in appended)
    seqs = {e.id: (await log.get(TENANT, e.id)).seq for e in old[:2]}  # type: ignore[union-attr]
    done = await delivery(app, old[0], seqs[old[0].id], "succeeded")
    await routed_to(app, 10**9)
    # The clock 40 days on, retention 7: every partition made so far is older than it.
    now = real_now + 40 * DAY
    stop = asyncio.Event()
    written: list[str] = []

    async def appender() -> None:
        while not stop.is_set():
            batch = [event(now + len(written) * 1e-3 + i * 1e-4) for i in range(20)]
            await log.append(batch)
            written.extend(e.id for e in batch)
            await asyncio.sleep(0)

    task = asyncio.create_task(appender())
    await asyncio.sleep(0.2)
    dropped: list[tuple[str, str, int]] = []
    maintenance = Maintenance(app, owner, retention_days=7, on_dropped=lambda *d: dropped.append(d))
    report = await maintenance.run_once(now=now)
    await asyncio.sleep(0.2)
    stop.set()
    await task  # an error while partitions were made and dropped would surface here

    assert "events_history" in report.dropped and "attempts_history" in report.dropped
    assert report.rows["events"] == len(old)
    assert report.rows["deliveries"] == 1
    assert ("events", "partition", 1) in dropped
    kept = await where_stored(app, written)
    assert len(kept) == len(written) > 0  # no new event lost
    assert await log.get(TENANT, old[0].id) is None
    async with app.read() as conn:
        assert await conn.scalar(sa.select(deliveries.c.id).where(deliveries.c.id == done)) is None
        keys = {k for (k,) in await conn.execute(sa.select(idempotency_keys.c.idempotency_key))}
        assert keys == set(written)  # the dropped events' keys went with them
        assert await rls.problems(conn) == []
    layout = await maintenance.layout("events")
    assert layout[0].lower >= now - 7 * DAY - DAY
    # A second pass finds nothing more to do.
    again = await maintenance.run_once(now=now)
    assert again.dropped == [] and again.created == []


async def test_retention_keeps_a_day_with_live_deliveries_or_unrouted_events(
    pg: tuple[Database, Database],
) -> None:
    app, owner = pg
    log = EventLog(app)
    real_now = time.time()
    old = event(real_now - 30 * DAY)
    await log.append([old])
    seq = (await log.get(TENANT, old.id)).seq  # type: ignore[union-attr]
    maintenance = Maintenance(app, owner, retention_days=7)
    now = real_now + 40 * DAY

    await routed_to(app, seq - 1)  # not routed yet
    report = await maintenance.run_once(now=now)
    assert ("events_history", "events a log cursor has not passed") in report.kept

    await routed_to(app, seq)
    live = await delivery(app, old, seq, "scheduled")
    report = await maintenance.run_once(now=now)
    assert ("events_history", "events with live deliveries") in report.kept
    assert await log.get(TENANT, old.id) is not None

    async with app.write() as conn:
        await conn.execute(deliveries.update().where(deliveries.c.id == live).values(status="dead"))
    report = await maintenance.run_once(now=now)
    assert "events_history" in report.dropped
    assert await log.get(TENANT, old.id) is None


async def test_a_pass_stopped_after_the_detach_is_finished_by_the_next(
    pg: tuple[Database, Database], postgres_database: str
) -> None:
    app, owner = pg
    log = EventLog(app)
    old = event(time.time() - 30 * DAY)
    await log.append([old])
    seq = (await log.get(TENANT, old.id)).seq  # type: ignore[union-attr]
    await delivery(app, old, seq, "succeeded")
    conn = await connect(postgres_database)
    try:
        await conn.execute("ALTER TABLE events DETACH PARTITION events_history")
    finally:
        await conn.close()
    report = await Maintenance(app, owner).run_once()  # no retention set: it only finishes
    assert report.dropped == ["events_history"] and report.rows["deliveries"] == 1


async def test_start_up_refuses_a_partition_without_its_policy(
    pg: tuple[Database, Database], postgres_database: str
) -> None:
    app, _ = pg
    day = partitions.day_name("events", partitions.day_start(time.time()) + 3 * DAY)
    conn = await connect(postgres_database)
    try:
        await conn.execute(f"DROP POLICY {rls.POLICY} ON {day}")
    finally:
        await conn.close()
    async with app.read() as c:
        found = await rls.problems(c)
    assert any(day in p and rls.POLICY in p for p in found), found
    with pytest.raises(rls.UnsafeDatabase):
        async with app.read() as c:
            await rls.verify(c)


async def test_sqlite_retention_deletes_the_old_log_in_batches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/retention.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        log = EventLog(db)
        now = time.time()
        old = [event(now - 30 * DAY + i) for i in range(2_500)]
        new = [event(now - 60 + i) for i in range(10)]
        await log.append(old + new)
        by_id = {e.id: (await log.get(TENANT, e.id)).seq for e in old[:3]}  # type: ignore[union-attr]
        live = await delivery(db, old[1], by_id[old[1].id], "pending")
        await delivery(db, old[2], by_id[old[2].id], "succeeded")
        await routed_to(db, by_id[old[0].id] - 1)  # nothing routed yet: nothing goes
        assert (await Maintenance(db, retention_days=7).run_once(now=now)).rows == {}
        await routed_to(db, 10**9)
        report = await Maintenance(db, retention_days=7, batch=1_000).run_once(now=now)
        assert report.rows == {"events": len(old) - 1, "deliveries": 1}
        assert await log.count() == len(new) + 1
        assert await log.get(TENANT, old[1].id) is not None  # its delivery is live
        for e in new:
            assert await log.get(TENANT, e.id) is not None
        async with db.read() as conn:
            left = (await conn.execute(sa.select(deliveries.c.id))).scalars().all()
        assert left == [live]
    finally:
        await db.close()


async def test_the_maintenance_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        await EventLog(db).append([event(time.time() - 30 * DAY + i) for i in range(5)])
        await routed_to(db, 10**9)
    finally:
        await db.close()
    env = {"INTERLINK_DATABASE_URL": url, "INTERLINK_CONFIG": str(tmp_path / "none.toml")}
    run = functools.partial(CliRunner().invoke, app, env=env)
    result = await asyncio.to_thread(run, ["maintenance", "run"])
    assert result.exit_code == 0, result.output
    assert "rows dropped: none" in result.output  # no retention set: events are kept
    result = await asyncio.to_thread(run, ["maintenance", "run", "--retention-days", "7"])
    assert result.exit_code == 0, result.output
    assert "rows dropped: events 5" in result.output
    result = await asyncio.to_thread(run, ["maintenance", "run", "--retention-days", "0"])
    assert result.exit_code == 2 and "retention_days must be more than 0" in result.output


async def test_the_maintenance_command_on_postgres(
    pg: tuple[Database, Database], postgres_database: str, tmp_path: Path
) -> None:
    env = {
        "INTERLINK_DATABASE_URL": app_url(postgres_database),
        "INTERLINK_MIGRATION_DATABASE_URL": postgres_database,
        "INTERLINK_CONFIG": str(tmp_path / "none.toml"),
    }
    far = time.time() + 30 * DAY
    await EventLog(pg[0]).append([event(far)])
    result = await asyncio.to_thread(CliRunner().invoke, app, ["maintenance", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert "partitions made: none" in result.output and "partitions dropped: none" in result.output
