"""What row-level security costs the hot path on PostgreSQL: reads, and claim + settle.

``python -m bench.rls_overhead [--deliveries N] [--batch B] [--rounds R]`` (needs
INTERLINK_TEST_POSTGRES_URL, a role that may create databases, as for the tests). Fresh
databases, each with N routed deliveries: N read transactions (a delivery by id, as the API
reads it), then the deliveries drained by claim + settle cycles of B, in each of

  before        migrations up to 0004 (no RLS), as the owner, no scope statement
  set_config    the same schema, with the per-transaction scope statement
  rls           the whole schema (RLS forced), as the application role, in the system scope

R rounds, interleaved. Prints the median time per read and per cycle of each variant. Commits
fsync, so a cycle's time is mostly the disk's; a shared machine is noisy: compare runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from interlink.domain.delivery import AttemptOutcome, AttemptResult, decide
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.domain.retry import RetryPolicy
from interlink.storage import database, migrate
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries
from interlink.storage.event_log import EventLog
from interlink.storage.management import Management
from interlink.storage.ports import NewDelivery, Settled
from interlink.storage.secrets_box import SecretBox
from interlink.storage.tenancy import system_scope, tenant_scope

APP_ROLE = "interlink_app"


def _url(server: str, **parts: Any) -> str:
    return make_url(server).set(**parts).render_as_string(hide_password=False)


@asynccontextmanager
async def _fresh_database(server: str) -> AsyncIterator[str]:
    name = f"interlink_test_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_url(server, drivername="postgresql"))
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" OWNER interlink_owner TEMPLATE interlink_template'
        )
        yield _url(server, database=name)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def _route(db: Database, n: int) -> tuple[Deliveries, str, list[str]]:
    management, log, deliveries = (
        Management(db, SecretBox([SecretBox.new_key()])),
        EventLog(db),
        Deliveries(db),
    )
    tenant, _ = await management.create_tenant("bench")
    endpoint = await management.create_endpoint(
        tenant.id,
        url="http://127.0.0.1:9/x",
        description="",
        secret="whsec_" + "A" * 40,
        retry=RetryPolicy(schedule=(0, 60)),
        timeout_seconds=5,
        concurrency=10_000,
    )
    now = time.time()
    events = [
        Event(new_id("event"), tenant.id, "src", f"k{i}", "t", None, now, None, b"{}", b"{}", {})
        for i in range(n)
    ]
    appended = await log.append(events)
    entries = {e.id: e.seq for e in await log.read_after(0, n)}
    batch = [
        NewDelivery(new_id("delivery"), tenant.id, a.event_id, entries[a.event_id], endpoint.id)
        for a in appended
    ]
    await deliveries.route(batch, "router", max(entries.values()))
    return deliveries, tenant.id, [d.id for d in batch]


async def _reads(deliveries: Deliveries, tenant_id: str, ids: list[str]) -> list[float]:
    timings: list[float] = []
    for delivery_id in ids:
        started = time.perf_counter()
        assert await deliveries.get(tenant_id, delivery_id) is not None
        timings.append(time.perf_counter() - started)
    return timings


async def _drain(deliveries: Deliveries, batch: int) -> list[float]:
    timings: list[float] = []
    result = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    while True:
        started = time.perf_counter()
        claimed = await deliveries.claim_due(time.time() + 1, batch, lease_seconds=30)
        if not claimed:
            return timings
        now = time.time()
        decision = decide(0, result, RetryPolicy(schedule=(0, 60)))
        await deliveries.settle([Settled(c, now, result, decision) for c in claimed])
        timings.append(time.perf_counter() - started)


async def _variant(server: str, name: str, n: int, batch: int) -> tuple[float, float]:
    async with _fresh_database(server) as owner_url:
        unscoped: Callable[..., Any] | None = None
        if name == "rls":
            await asyncio.to_thread(migrate.upgrade, owner_url)
            url = _url(owner_url, username=APP_ROLE)
        else:
            await asyncio.to_thread(migrate.upgrade, owner_url, "0004")
            url = owner_url
        if name == "before":
            unscoped = database._enter_scope

            async def _none(_: Any) -> None:
                return None

            database._enter_scope = _none  # type: ignore[assignment]
        db = Database(url, pool_size=5)
        try:
            with system_scope("bench"):
                deliveries, tenant_id, ids = await _route(db, n)
            with tenant_scope(tenant_id):
                reads = await _reads(deliveries, tenant_id, ids)
            with system_scope("bench"):
                cycles = await _drain(deliveries, batch)
            return statistics.median(reads), statistics.median(cycles)
        finally:
            if unscoped is not None:
                database._enter_scope = unscoped  # type: ignore[assignment]
            await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = os.environ["INTERLINK_TEST_POSTGRES_URL"]
    names = ("before", "set_config", "rls")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            results[name].append(await _variant(server, name, args.deliveries, args.batch))
    for name in names:
        reads = statistics.median(r for r, _ in results[name]) * 1e3
        cycles = statistics.median(c for _, c in results[name]) * 1e3
        print(f"{name:>10}: read {reads:.3f} ms, claim+settle of {args.batch} {cycles:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
