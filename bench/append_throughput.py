"""Ingest's storage hot path alone: appends of group-commit batches, events per second.

``python -m bench.append_throughput [--events N] [--batch B] [--rounds R]`` appends N events in
batches of B (one in ten a duplicate of an earlier key, as partner retries are) to a fresh
database, through the adapter ingest uses: the SQLite driver's log writer (WAL, fsynced), and
on PostgreSQL (with INTERLINK_TEST_POSTGRES_URL, as for the tests) ``EventLog`` as the
application role. Prints the median rate of R rounds. Run it on two checkouts to compare them
(``PYTHONPATH=<other checkout>/src``); the machine is shared and noisy: compare runs, not
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.event_log import EventLog
from interlink.storage.ports import LogWriter
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.log_writer import SqliteLogWriter
from interlink.storage.tenancy import system_scope

# Received this many days from now: 3 puts PostgreSQL's appends in a daily partition, as they are
# once the days migration 0011 left to its history partition have passed.
OFFSET_DAYS = 0.0


def _batches(n: int, size: int, offset_days: float = 0.0) -> list[list[Event]]:
    now = time.time() + offset_days * 86_400
    out = []
    for start in range(0, n, size):
        batch = []
        for i in range(start, min(n, start + size)):
            key = f"k{i // 2}" if i % 10 == 9 else f"k{i}"  # one in ten: a partner's retry
            batch.append(
                Event(
                    new_id("event"), "tnt_b", "src_b", key, "t", None, now, None, b"{}", b"{}", {}
                )
            )
        out.append(batch)
    return out


async def _rate(log: LogWriter, n: int, size: int) -> float:
    batches = _batches(n, size, OFFSET_DAYS)
    started = time.perf_counter()
    for batch in batches:
        await log.append(batch)
    return n / (time.perf_counter() - started)


async def _sqlite(n: int, size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        await asyncio.to_thread(migrate.upgrade, f"sqlite:///{path}")
        driver = SqliteDriver(path)
        await driver.start()
        try:
            return await _rate(SqliteLogWriter(driver), n, size)
        finally:
            await driver.close()


@asynccontextmanager
async def _fresh_database(server: str) -> AsyncIterator[str]:
    name = f"interlink_test_bench_{uuid.uuid4().hex[:12]}"
    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" OWNER interlink_owner TEMPLATE interlink_template'
        )
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def _postgres(server: str, n: int, size: int) -> float:
    async with _fresh_database(server) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        db = Database(make_url(url).set(username="interlink_app").render_as_string(False))
        try:
            with system_scope("bench: appends"):
                return await _rate(EventLog(db), n, size)
        finally:
            await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--received-in-days", type=float, default=0.0)
    args = parser.parse_args()
    global OFFSET_DAYS
    OFFSET_DAYS = args.received_in_days
    server = os.environ.get("INTERLINK_TEST_POSTGRES_URL")
    rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    for _ in range(args.rounds):
        rates["sqlite"].append(await _sqlite(args.events, args.batch))
        if server:
            rates["postgres"].append(await _postgres(server, args.events, args.batch))
    for backend, values in rates.items():
        if values:
            print(
                f"{backend:>8}: {statistics.median(values):,.0f} events/s appended"
                f" (batches of {args.batch}; rounds: {', '.join(f'{v:,.0f}' for v in values)})"
            )


if __name__ == "__main__":
    asyncio.run(main())
