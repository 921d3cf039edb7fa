"""The lane stall after crashes (issue 11, part 1), reproduced at the storage ports.

A dispatcher is played step by step on an explicit clock against every adapter (the SQLite
driver, SQLAlchemy on SQLite and on PostgreSQL): each step settles what the previous one sent
(every receiver answers 200) and claims again; a crash drops what was in flight unsettled and
the restart releases its leases, as ``interlink up`` does at start-up on SQLite, or lets them
lapse, as a dispatcher's leases do on PostgreSQL when its process is gone. Two endpoints, load
arriving all along, ten crashes. Then every delivery must succeed within a minute of the last
restart, and no lane may be left full by deliveries that nobody is sending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from tests.integration.test_storage_ports import (  # noqa: F401 - a fixture
    Stores,
    endpoint,
    event,
    stores,
)

from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.delivery import AttemptOutcome, AttemptResult, decide
from interlink.domain.ids import new_id
from interlink.domain.retry import RetryPolicy
from interlink.storage.ports import Claimed, NewDelivery, Settled
from interlink.storage.tables import deliveries

STEP = 0.05  # seconds of the dispatcher's clock per claim
CONCURRENCY = 8  # per endpoint
CLAIM_LIMIT = 256
LEASE = 2.0
OK = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)


@dataclass
class Dispatcher:
    """A dispatcher played by hand: what it sent at one step is answered by the next."""

    stores: Stores
    now: float
    sent: list[Claimed] = field(default_factory=list)

    async def step(self) -> None:
        queue = self.stores.queue
        if self.sent:
            policy = RetryPolicy()
            settled = [
                Settled(c, self.now - STEP, OK, decide(c.attempt_count, OK, policy))
                for c in self.sent
            ]
            await queue.settle(settled, self.now)
        self.sent = await queue.claim_due(self.now, CLAIM_LIMIT, LEASE)
        if self.sent:
            self.now += STEP
            return
        # Idle: sleep until the next delivery is due, as the real one does.
        due = await queue.next_due_at()
        self.now = max(self.now + STEP, due or self.now)

    async def crash_and_restart(self, restart: str) -> None:
        self.sent = []  # sent, never settled: the process died
        self.now += STEP
        if restart == "release":
            await self.stores.queue.release_all_leases(self.now)
        # "lapse": as with processes sharing PostgreSQL, the dead one's leases just run out.


async def arrive(s: Stores, tenant: str, endpoints: list[str], first: int, n: int) -> None:
    """``n`` events appended and routed to every endpoint."""
    appended = await s.log.append([event(tenant, f"m{first + i}") for i in range(n)])
    entries = {e.id: e.seq for e in await s.log.read_after(0, 100_000)}
    new = [
        NewDelivery(new_id("delivery"), tenant, a.event_id, entries[a.event_id], ep)
        for a in appended
        for ep in endpoints
    ]
    await s.queue.route(new, "router", max(entries.values()))


async def undelivered(s: Stores) -> dict[str, int]:
    query = (
        sa.select(deliveries.c.status, sa.func.count())
        .where(deliveries.c.status != "succeeded")
        .group_by(deliveries.c.status)
    )
    async with s.deliveries.db.read() as conn:
        return {status: int(n) for status, n in await conn.execute(query)}


@pytest.mark.parametrize("restart", ["release", "lapse"])
async def test_crashes_under_load_leave_no_lane_stalled(
    stores: Stores,  # noqa: F811 - the imported fixture
    restart: str,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    # A breaker that judges from the first attempt on: the lane's slots alone bound the sends.
    eps = [
        await endpoint(stores, t.id, concurrency=CONCURRENCY, breaker=BreakerPolicy(min_attempts=1))
        for _ in range(2)
    ]
    d = Dispatcher(stores, time.time())
    sent = 0
    for _ in range(10):
        for _ in range(6):  # load: more than the lanes take per step, so a backlog builds
            await arrive(stores, t.id, eps, sent, 12)
            sent += 12
            await d.step()
        await d.crash_and_restart(restart)
    restarted = d.now
    while d.now < restarted + 60 and await undelivered(stores):
        await d.step()
    left = await undelivered(stores)
    lanes = [await stores.management.endpoint_lane(t.id, ep) for ep in eps]
    horizons = [round(lane.horizon - d.now) for lane in lanes]
    assert not left, (
        f"{sum(left.values())} of {2 * sent} deliveries not delivered 60 s after the last"
        f" restart: {left}; lanes' horizons {horizons} s ahead,"
        f" full since {[lane.full_since for lane in lanes]}"
    )
    print(f"\nall {2 * sent} delivered {d.now - restarted:.1f} s after the last restart")
