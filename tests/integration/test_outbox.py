"""The transactional outbox (``interlink_client.outbox``) against a real Interlink in-process,
on SQLite and PostgreSQL: only committed rows are shipped, once each (a relay that shipped but
did not mark sent ships again, and Interlink answers duplicates), in id order per key; a row
Interlink refuses for good is set aside without stopping the others; on PostgreSQL a key
claimed by one relay is invisible to another until that relay commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.conftest import Harness

from interlink_client import AsyncInterlink
from interlink_client.outbox import create_table, outbox, publish, publish_async
from interlink_client.outbox.relay import Relay, engine_for


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/service.db"
    else:
        url = request.getfixturevalue("postgres_database")
    made = engine_for(url)
    async with made.begin() as conn:
        await conn.run_sync(create_table)
    yield made
    await made.dispose()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[AsyncInterlink]:
    key = await harness.tenant("service")
    transport = httpx.ASGITransport(app=harness.system)
    async with AsyncInterlink("http://interlink", key, transport=transport) as made:
        yield made


async def _stored(client: AsyncInterlink) -> list[tuple[str, str | None, int]]:
    """(idempotency key, key, data n) of the tenant's events, oldest first."""
    events = [e async for e in client.iter_events(limit=500)]
    return [(e.idempotency_key, e.key, e.data["n"]) for e in reversed(events)]


async def test_committed_rows_ship_once_in_order(
    engine: AsyncEngine, client: AsyncInterlink
) -> None:
    for n in range(6):
        async with engine.begin() as conn:
            await publish_async(conn, "order.placed", {"n": n}, key=f"k{n % 2}")
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await publish_async(conn, "order.placed", {"n": 99}, key="k0")
            raise RuntimeError("the business write failed: the event goes with it")
    relay = Relay(engine, client, batch_size=4)
    assert await relay.drain() == 6
    stored = await _stored(client)
    assert [s[2] for s in stored] == [0, 1, 2, 3, 4, 5]
    assert [s[0] for s in stored] == [f"outbox-{i}" for i in range(1, 7)]

    # A relay killed after shipping, before marking: the rows go again, Interlink dedupes them.
    async with engine.begin() as conn:
        await conn.execute(outbox.update().where(outbox.c.id > 3).values(sent_at=None))
    assert await relay.drain() == 3
    assert relay.totals.duplicates == 3 and relay.totals.rows == 9
    assert len(await _stored(client)) == 6


async def test_a_refused_row_is_set_aside_and_the_rest_ship(
    engine: AsyncEngine, client: AsyncInterlink
) -> None:
    async with engine.begin() as conn:
        await publish_async(conn, "order.placed", {"n": 0}, key="k")
        await publish_async(conn, "not a type", {"n": 1}, key="k")  # refused: 400
        await publish_async(conn, "order.placed", {"n": 2}, key="k", idempotency_key="mine")
    relay = Relay(engine, client)
    assert await relay.drain() == 3
    assert await _stored(client) == [("outbox-1", "k", 0), ("mine", "k", 2)]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox).where(outbox.c.id == 2))).one()
    assert row.failed_at is not None and row.sent_at is None and "400" in row.error
    assert await relay.drain() == 0


async def test_sync_publish_in_a_sync_transaction(tmp_path: Path, client: AsyncInterlink) -> None:
    sync = sa.create_engine(f"sqlite:///{tmp_path}/sync.db")
    with sync.begin() as conn:
        create_table(conn)
        conn.execute(sa.text("CREATE TABLE bookings (id INTEGER PRIMARY KEY)"))
    with sync.begin() as conn:
        conn.execute(sa.text("INSERT INTO bookings (id) VALUES (1)"))
        publish(conn, "booking.held", {"n": 7}, key="b-1")
    sync.dispose()
    engine = engine_for(f"sqlite:///{tmp_path}/sync.db")
    try:
        assert await Relay(engine, client).drain() == 1
    finally:
        await engine.dispose()
    assert await _stored(client) == [("outbox-1", "b-1", 7)]


async def test_postgres_a_claimed_key_is_hidden_from_other_relays(
    postgres_database: str, client: AsyncInterlink
) -> None:
    engine = engine_for(postgres_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(create_table)
            for n, key in enumerate(["a", "a", "b", None, "a"]):
                await publish_async(conn, "order.placed", {"n": n}, key=key)
        first, second = Relay(engine, client, batch_size=1), Relay(engine, client, batch_size=5)
        async with engine.begin() as one, engine.begin() as two:
            held = await first.claim(one)
            assert [r.id for r in held] == [1]  # key a's head, and with it key a
            others = await second.claim(two)
            assert [r.id for r in others] == [3, 4]  # b and the keyless row: none of a's
        assert await second.drain() == 5
        stored = await _stored(client)
        assert [s[2] for s in stored if s[1] == "a"] == [0, 1, 4]
    finally:
        await engine.dispose()


async def test_postgres_listen_wakes_the_relay(
    postgres_database: str, client: AsyncInterlink
) -> None:
    engine = engine_for(postgres_database)
    stop = asyncio.Event()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(create_table)
        relay = Relay(engine, client, poll_seconds=60)  # only a notification can wake it soon
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.5)  # it has looked once, found nothing, and listens
        async with engine.begin() as conn:
            await publish_async(conn, "order.placed", {"n": 1})
        for _ in range(100):
            if relay.totals.rows:
                break
            await asyncio.sleep(0.05)
        assert relay.totals.rows == 1  # well before the safety poll (5 s)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()


async def test_postgres_a_lost_listen_connection_is_made_again(
    postgres_database: str, client: AsyncInterlink
) -> None:
    engine = engine_for(postgres_database)
    stop = asyncio.Event()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(create_table)
        relay = Relay(engine, client, poll_seconds=60)
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.5)
        async with engine.begin() as conn:  # a database restart, as the listener sees it
            await conn.execute(
                sa.text("SELECT pg_terminate_backend(:pid)"),
                {"pid": relay._listening.get_server_pid()},
            )

        async def shipped_within(rows: int, seconds: float) -> bool:
            for _ in range(int(seconds / 0.05)):
                if relay.totals.rows >= rows:
                    return True
                await asyncio.sleep(0.05)
            return False

        async with engine.begin() as conn:
            await publish_async(conn, "order.placed", {"n": 1})
        # Unheard (nobody listens now): the safety poll ships it, and the relay listens again.
        assert await shipped_within(1, 15)
        async with engine.begin() as conn:
            await publish_async(conn, "order.placed", {"n": 2})
        assert await shipped_within(2, 3)  # heard: well before the next safety poll (5 s)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
