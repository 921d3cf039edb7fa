"""How many deliveries are still owed, counted up to a bound: the ingest watermark's measure.

The count walks the partial index of live deliveries (``ix_deliveries_due_active``) and stops
at ``limit``, so a huge backlog costs no more than the limit, whatever the store's size.
"""

from __future__ import annotations

import sqlalchemy as sa

from interlink.storage.database import Database
from interlink.storage.ports import DUE_STATUSES
from interlink.storage.tables import deliveries
from interlink.storage.tenancy import system_scope


async def unsettled_deliveries(db: Database, limit: int) -> int:
    """Deliveries pending, scheduled or in flight, every tenant's; at most ``limit``."""
    live = (
        sa.select(sa.literal(1))
        .where(deliveries.c.status.in_(DUE_STATUSES))
        .limit(limit)
        .subquery()
    )
    with system_scope("ingest watermark: backlog"):
        async with db.read() as conn:
            counted = await conn.execute(sa.select(sa.func.count()).select_from(live))
            return int(counted.scalar_one())
