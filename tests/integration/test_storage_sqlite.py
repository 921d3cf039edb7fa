"""The SQLite adapter: migrations, durability settings, idempotent appends, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.ingress.group_commit import GroupCommit
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.event_log import EventLog


def event(key: str, source: str = "src_1") -> Event:
    return Event(
        id=new_id("event"),
        tenant_id="tnt_1",
        source_id=source,
        idempotency_key=key,
        type="booking.created",
        key=None,
        received_at=time.time(),
        occurred_at=None,
        data=b"{}",
        raw=b"{}",
        headers={},
    )


@pytest.fixture
async def log(tmp_path: Path) -> EventLog:
    url = f"sqlite:///{tmp_path}/t.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    yield EventLog(db)
    await db.close()


def test_migrations_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    with sqlite3.connect(tmp_path / "m.db") as conn:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert names <= {"alembic_version"}
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "m.db") as conn:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"events", "deliveries", "attempts", "sources", "endpoints"} <= names


async def test_commits_are_durable_wal_with_full_sync(log: EventLog) -> None:
    async with log.db.read() as conn:
        mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
        sync = (await conn.execute(sa.text("PRAGMA synchronous"))).scalar()
    assert mode == "wal"
    assert sync == 2  # FULL: the WAL is fsynced at every commit, before ingest answers 202


async def test_append_dedupes_within_and_across_batches(log: EventLog) -> None:
    a, b, a_again = event("k1"), event("k2"), event("k1")
    first = await log.append([a, b, a_again])
    assert [r.duplicate for r in first] == [False, False, True]
    assert first[2].event_id == a.id
    second = await log.append([event("k1"), event("k1", source="src_2")])
    assert second[0].duplicate and second[0].event_id == a.id
    assert not second[1].duplicate  # the same partner id from another source is another event
    assert await log.count() == 3


async def test_group_commit_shares_transactions(log: EventLog) -> None:
    calls: list[int] = []
    original = log.append

    async def counting(batch):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        return await original(batch)

    log.append = counting  # type: ignore[method-assign]
    commit = GroupCommit(log)
    commit.start()
    try:
        results = await asyncio.gather(*(commit.submit(event(f"k{i % 150}")) for i in range(300)))
    finally:
        await commit.stop()
    assert sum(calls) == 300
    assert len(calls) < 30, calls  # 300 concurrent requests, a handful of fsyncs
    assert sum(not r.duplicate for r in results) == 150
    assert await log.count() == 150


async def test_group_commit_failure_fails_only_that_batch(log: EventLog) -> None:
    fail = True
    original = log.append

    async def flaky(batch):  # type: ignore[no-untyped-def]
        if fail:
            raise ConnectionError("database went away")
        return await original(batch)

    log.append = flaky  # type: ignore[method-assign]
    commit = GroupCommit(log)
    commit.start()
    try:
        with pytest.raises(ConnectionError):
            await commit.submit(event("x"))
        fail = False
        assert not (await commit.submit(event("x"))).duplicate
    finally:
        await commit.stop()


async def test_one_refused_event_does_not_fail_its_batch(log: EventLog) -> None:
    original = log.append

    async def refuses_poison(batch):  # type: ignore[no-untyped-def]
        if any(e.idempotency_key == "poison" for e in batch):
            raise ValueError("the store refuses this row")
        return await original(batch)

    log.append = refuses_poison  # type: ignore[method-assign]
    commit = GroupCommit(log)
    commit.start()
    try:
        keys = [f"k{i}" for i in range(50)]
        keys[17] = "poison"
        results = await asyncio.gather(
            *(commit.submit(event(k)) for k in keys), return_exceptions=True
        )
    finally:
        await commit.stop()
    failed = [k for k, r in zip(keys, results, strict=True) if isinstance(r, Exception)]
    assert failed == ["poison"]
    assert await log.count() == 49


async def test_a_request_of_many_events_is_never_split_nor_mixed_into_a_failure(
    log: EventLog,
) -> None:
    # A published batch is one request: its events share one transaction whatever else is
    # queued, and a poison request fails alone, whole.
    original = log.append
    sizes: list[int] = []

    async def refuses_poison(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        if any(e.idempotency_key.startswith("poison") for e in batch):
            raise ValueError("the store refuses this row")
        return await original(batch)

    log.append = refuses_poison  # type: ignore[method-assign]
    commit = GroupCommit(log, max_batch=100)
    commit.start()
    try:
        requests = [[event(f"r{r}-{i}") for i in range(40)] for r in range(6)]
        requests[3][39] = event("poison")
        requests.append([event(f"big-{i}") for i in range(250)])  # more than max_batch
        results = await asyncio.gather(
            *(commit.submit_all(r) for r in requests), return_exceptions=True
        )
    finally:
        await commit.stop()
    assert isinstance(results[3], ValueError)
    for request, result in zip(requests, results, strict=True):
        if request is not requests[3]:
            assert isinstance(result, list)
            assert [a.event_id for a in result] == [e.id for e in request]
    assert 250 in sizes and all(s % 40 == 0 or s == 250 for s in sizes), sizes
    assert await log.count() == 5 * 40 + 250
