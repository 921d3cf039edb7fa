"""What the console's overview counts: one tenant's deliveries in a window, its quarantine,
and what needs a look (events per source are storage/event_counts.py's).

Each figure is one grouped query on columns an index leads with (the tenant, then the id, which
is time-ordered, or the status), run in the caller's tenant scope like every read of the API.
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from interlink.domain.delivery import DeliveryStatus
from interlink.domain.ids import id_floor
from interlink.storage.database import Database
from interlink.storage.tables import deliveries, quarantine


class EndpointTraffic(msgspec.Struct):
    endpoint_id: str
    succeeded: int = 0
    dead: int = 0
    waiting: int = 0  # pending, scheduled or in flight
    recent: int = 0  # of them, those created since the shorter window's start

    @property
    def total(self) -> int:
        return self.succeeded + self.dead + self.waiting

    @property
    def success_rate(self) -> float | None:
        settled = self.succeeded + self.dead
        return None if settled == 0 else self.succeeded / settled


class Needs(msgspec.Struct):
    """What an operator should look at now."""

    dead: int
    quarantined: int


class ConsoleStats:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def deliveries_by_endpoint(
        self, tenant_id: str, since: float, recent_since: float
    ) -> list[EndpointTraffic]:
        """Deliveries per endpoint created since ``since``, by outcome, and how many of them
        since ``recent_since``: both windows in one read."""
        recent = sa.func.sum(sa.case((deliveries.c.created_at >= recent_since, 1), else_=0))
        query = (
            sa.select(deliveries.c.endpoint_id, deliveries.c.status, sa.func.count(), recent)
            .where(
                deliveries.c.tenant_id == tenant_id,
                # Ids are time-ordered: the (tenant_id, id) index reads the window's only. A
                # minute's slack: an id is made a moment before its created_at is.
                deliveries.c.id >= id_floor("delivery", since - 60),
                deliveries.c.created_at >= since,
            )
            .group_by(deliveries.c.endpoint_id, deliveries.c.status)
        )
        out: dict[str, EndpointTraffic] = {}
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        for endpoint_id, status, n, newer in rows:
            t = out.setdefault(endpoint_id, EndpointTraffic(endpoint_id))
            t.recent += int(newer or 0)
            if status == DeliveryStatus.SUCCEEDED:
                t.succeeded += int(n)
            elif status == DeliveryStatus.DEAD:
                t.dead += int(n)
            else:
                t.waiting += int(n)
        return sorted(out.values(), key=lambda t: t.endpoint_id)

    async def quarantined_by_source(self, tenant_id: str, since: float) -> dict[str, int]:
        query = (
            sa.select(quarantine.c.source_id, sa.func.count())
            .where(
                quarantine.c.tenant_id == tenant_id,
                quarantine.c.id >= id_floor("quarantine", since - 60),
                quarantine.c.created_at >= since,
            )
            .group_by(quarantine.c.source_id)
        )
        async with self.db.read() as conn:
            return {r[0]: int(r[1]) for r in await conn.execute(query)}

    async def needs(self, tenant_id: str) -> Needs:
        # Partial indexes hold only dead deliveries and open entries: both counts stay small.
        dead = sa.select(sa.func.count()).where(
            deliveries.c.tenant_id == tenant_id, deliveries.c.status == DeliveryStatus.DEAD.value
        )
        held = sa.select(sa.func.count()).where(
            quarantine.c.tenant_id == tenant_id, quarantine.c.resolved_at.is_(None)
        )
        async with self.db.read() as conn:
            return Needs(
                dead=int((await conn.execute(dead)).scalar() or 0),
                quarantined=int((await conn.execute(held)).scalar() or 0),
            )
