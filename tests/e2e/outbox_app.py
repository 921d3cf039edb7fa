"""The application of the outbox end-to-end test (test_outbox.py), run as its own process.

Each transaction bumps its key's ``accounts.version`` (a row lock on PostgreSQL: a key's writers
take turns, so a key's versions are committed in order), writes a ``bookings`` row and publishes
one event through the outbox; the planned rollbacks raise after all three, so nothing of them may
ever arrive. ``--seconds`` paces the whole run (the relays are killed during it).

    python tests/e2e/outbox_app.py --database URL --commits N --rollbacks M --keys K \
        --workers W --seconds S
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import deque

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlink_client.outbox import publish_async
from interlink_client.outbox.relay import engine_for

BUMP = sa.text("UPDATE accounts SET version = version + 1 WHERE key = :key RETURNING version")
BOOK = sa.text("INSERT INTO bookings (txn, key, version) VALUES (:txn, :key, :version)")


class Rollback(Exception):
    pass


async def transaction(engine: AsyncEngine, txn: int, key: str, rollback: bool) -> None:
    try:
        async with engine.begin() as conn:
            version = (await conn.execute(BUMP, {"key": key})).scalar_one()
            await conn.execute(BOOK, {"txn": txn, "key": key, "version": version})
            data = {"txn": txn, "key": key, "version": version, "rolled_back": rollback}
            await publish_async(conn, "order.placed", data, key=key)
            if rollback:
                raise Rollback
    except Rollback:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--commits", type=int, required=True)
    parser.add_argument("--rollbacks", type=int, required=True)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    rng = random.Random(20261206)
    plan = [False] * args.commits + [True] * args.rollbacks
    rng.shuffle(plan)
    work = deque(
        (txn, f"k{rng.randrange(args.keys)}", rollback) for txn, rollback in enumerate(plan)
    )
    engine = engine_for(args.database)
    started = time.monotonic()
    pace = args.seconds / max(len(work), 1)

    async def worker() -> None:
        while work:
            txn, key, rollback = work.popleft()
            await transaction(engine, txn, key, rollback)
            # Paced by the plan, not by the previous sleep: slow commits are caught up.
            ahead = started + (txn + 1) * pace - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    await asyncio.gather(*(worker() for _ in range(args.workers)))
    await engine.dispose()
    print(f"app: {len(plan)} transactions in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
