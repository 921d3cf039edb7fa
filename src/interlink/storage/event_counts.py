"""Events per tenant, source and five minutes over the last week, counted once from the log.

The console's overview and partners pages show how many events each source brought in the last
hour, day and week. A ``GROUP BY`` over that window reads every event in it on every page view:
seconds on a store of a million events (bench/console.py). This reads each event once instead:
from the log after the position it has reached (``seq``, the order the router reads in), grouped
by SQL in chunks, and keeps the counts in memory, per process: a week of five-minute slots per
source. Its first read binary-searches the log for the week's first position (as the volume
monitor's backfill does). Counts are to the slot: "the last hour" is every slot that overlaps
it, up to five minutes more than an hour.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from interlink.storage.database import Database
from interlink.storage.event_log import first_at_or_after
from interlink.storage.tables import events
from interlink.storage.tenancy import system_scope

SLOT = 300.0
KEEP = 7 * 86400.0 + SLOT
_CHUNK = 200_000  # log positions per grouped read


class EventCounts:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._position: int | None = None  # the last log position counted
        # tenant → source → slot (start // SLOT) → events
        self._slots: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
        self._lock = asyncio.Lock()

    def _slot(self) -> sa.ColumnElement[Any]:
        if self._db.is_sqlite:  # CAST truncates; received_at is positive, so it floors
            return sa.cast(events.c.received_at / SLOT, sa.Integer)
        return sa.func.floor(events.c.received_at / SLOT)  # PostgreSQL's CAST rounds

    async def refresh(self, now: float) -> None:
        """Counts what the log holds beyond the position reached (once at a time)."""
        async with self._lock:
            # Every tenant's events: the counts are kept apart by tenant below, and a page
            # reads its own tenant's only (``per_source``).
            with system_scope("console event counts"):
                async with self._db.read() as conn:
                    await self._read(conn, now)
            self._prune(now)

    async def _read(self, conn: Any, now: float) -> None:
        head = int((await conn.execute(sa.select(sa.func.max(events.c.seq)))).scalar() or 0)
        if self._position is None:
            first = await first_at_or_after(conn, now - KEEP, head)
            self._position = head if first is None else first - 1
        slot = self._slot().label("slot")
        while self._position < head:
            upto = min(head, self._position + _CHUNK)
            query = (
                sa.select(events.c.tenant_id, events.c.source_id, slot, sa.func.count())
                .where(events.c.seq > self._position, events.c.seq <= upto)
                .group_by(events.c.tenant_id, events.c.source_id, slot)
            )
            for tenant_id, source_id, start, n in await conn.execute(query):
                slots = self._slots[tenant_id][source_id]
                slots[int(start)] = slots.get(int(start), 0) + int(n)
            self._position = upto

    def _prune(self, now: float) -> None:
        oldest = int((now - KEEP) // SLOT)
        for per_source in self._slots.values():
            for slots in per_source.values():
                for start in [s for s in slots if s < oldest]:
                    del slots[start]

    def per_source(self, tenant_id: str, since: float) -> dict[str, int]:
        """The tenant's events per source in the slots from the one holding ``since`` on."""
        first = int(since // SLOT)
        counted = {
            source_id: sum(n for start, n in slots.items() if start >= first)
            for source_id, slots in self._slots.get(tenant_id, {}).items()
        }
        return {s: n for s, n in counted.items() if n}
