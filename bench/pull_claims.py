"""The cost of a pull claim at a backlog depth, on the storage ports (no HTTP):
``python -m bench.pull_claims [--database URL] [--events N] [--keys K] [--handle M]``.

N events over K keys are routed to an ordered pull endpoint (and a few to a push endpoint);
then one loop claims 20 at a time and acks each (``claim_due`` and ``settle_held``, what a
consumer's requests run) until M are settled: the claim's mean time is what the backlog's
depth must not drive. Also timed: a push claim behind the pull backlog, and the long polls'
probe. ``--database``: an empty PostgreSQL database to migrate (``postgresql://…``; the
application role's rights are enough only after the owner migrated it), or SQLite in a
temporary file by default (through the SQLite driver, as ``interlink up`` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from interlink.domain.ids import new_id
from interlink.domain.models import EndpointKind, Event
from interlink.domain.ordering import Ordering
from interlink.domain.pull import Answer, settle_answer
from interlink.domain.retry import RetryPolicy
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries
from interlink.storage.event_log import EventLog
from interlink.storage.management import Management
from interlink.storage.ports import DeliveryQueue, LogWriter, NewDelivery, Settled
from interlink.storage.secrets_box import SecretBox
from interlink.storage.sqlite.delivery_queue import SqliteDeliveryQueue
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.log_writer import SqliteLogWriter
from interlink.storage.tenancy import system_scope

SECRET = "whsec_" + "A" * 40


def event(tenant: str, n: int, key: str | None) -> Event:
    return Event(
        id=new_id("event"),
        tenant_id=tenant,
        source_id="src_bench",
        idempotency_key=f"e{n}",
        type="booking.changed",
        key=key,
        received_at=time.time(),
        occurred_at=None,
        data=b'{"n": 1}',
        raw=b'{"n": 1}',
        headers={},
    )


async def route(
    log: LogWriter, reader: EventLog, queue: DeliveryQueue, events: list[Event], ep: str
) -> None:
    for start in range(0, len(events), 1000):
        await log.append(events[start : start + 1000])
    entries = {e.id: e for e in await reader.read_after(0, 10**9)}
    new = [
        NewDelivery(new_id("delivery"), e.tenant_id, e.id, entries[e.id].seq, ep, e.key)
        for e in events
    ]
    await queue.route(new, f"bench-{ep}", max(entries[e.id].seq for e in events))


async def run(url: str, n: int, keys: int, handle: int, sqlite_path: Path | None) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    events, deliveries = EventLog(db), Deliveries(db)
    management = Management(db, SecretBox([SecretBox.new_key()]))
    log: LogWriter = events
    queue: DeliveryQueue = deliveries
    driver = None
    if sqlite_path is not None:
        driver = SqliteDriver(sqlite_path)
        await driver.start()
        log, queue = SqliteLogWriter(driver), SqliteDeliveryQueue(driver)
    try:
        with system_scope("bench: pull claims"):
            tenant, _ = await management.create_tenant("bench")
            common = {"description": "", "secret": SECRET, "timeout_seconds": 5.0}
            pull = await management.create_endpoint(
                tenant.id,
                url="",
                kind=EndpointKind.PULL,
                ordering=Ordering.ORDERED,
                concurrency=500,
                retry=RetryPolicy(schedule=(0, 60)),
                **common,  # type: ignore[arg-type]
            )
            push = await management.create_endpoint(
                tenant.id,
                url="http://127.0.0.1:9/x",
                retry=RetryPolicy(),
                **common,  # type: ignore[arg-type]
            )
            backlog = [event(tenant.id, i, f"k{i % keys}") for i in range(n)]
            await route(log, events, queue, backlog, pull.id)
            pushed = [event(tenant.id, n + i, None) for i in range(20)]
            await route(log, events, queue, pushed, push.id)
            started = time.perf_counter()
            assert len(await queue.claim_due(time.time() + 1, 20, 30)) == 20
            push_ms = (time.perf_counter() - started) * 1000
            settled, claims, claiming = 0, 0, 0.0
            started = time.perf_counter()
            while settled < handle:
                t0 = time.perf_counter()
                claimed = await queue.claim_due(time.time(), 20, 30, pull.id)
                claiming += time.perf_counter() - t0
                claims += 1
                for c in claimed:
                    now = time.time()
                    result, decision = settle_answer(
                        c.attempt_count, Answer(True), 0.0, RetryPolicy(schedule=c.retry_schedule)
                    )
                    assert await queue.settle_held(Settled(c, now, result, decision), now)
                    settled += 1
            seconds = time.perf_counter() - started
            t0 = time.perf_counter()
            await queue.claimable([pull.id], time.time())
            probe_ms = (time.perf_counter() - t0) * 1000
        print(
            f"{'postgres' if sqlite_path is None else 'sqlite'}, {n:,} due over {keys} keys:"
            f" {claiming / claims * 1000:.1f} ms a claim of 20 ({claims} claims),"
            f" {settled / seconds:,.0f} claimed+acked/s in one loop; probe {probe_ms:.1f} ms;"
            f" a push claim behind the backlog {push_ms:.1f} ms"
        )
    finally:
        if driver is not None:
            await driver.close()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--handle", type=int, default=1_000)
    args = parser.parse_args()
    if args.database:
        asyncio.run(run(args.database, args.events, args.keys, args.handle, None))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        asyncio.run(run(f"sqlite:///{path}", args.events, args.keys, args.handle, path))


if __name__ == "__main__":
    main()
