"""The event log on the database: an append-only table whose ``seq`` is the log position.

Appends are idempotent on (source, partner event id): a duplicate returns the id of the event
first stored under that key and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from interlink.domain.models import Event
from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.ports import LOG_CHANNEL, Appended, LogEntry
from interlink.storage.rows import event_row
from interlink.storage.tables import cursors, events

# The advisory lock appends to the log take on PostgreSQL (any constant unique to Interlink).
LOG_APPEND_LOCK = 0x1A7E_106


class EventFilter(msgspec.Struct, frozen=True):
    type: str | None = None
    source_id: str | None = None
    received_after: float | None = None
    received_before: float | None = None


def event_conditions(tenant_id: str, where: EventFilter) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = [events.c.tenant_id == tenant_id]
    if where.type:
        out.append(events.c.type == where.type)
    if where.source_id:
        out.append(events.c.source_id == where.source_id)
    if where.received_after is not None:
        out.append(events.c.received_at >= where.received_after)
    if where.received_before is not None:
        out.append(events.c.received_at < where.received_before)
    return out


def event_from_row(row: Any) -> Event:
    return Event(
        id=row.id,
        tenant_id=row.tenant_id,
        source_id=row.source_id,
        idempotency_key=row.idempotency_key,
        type=row.type,
        key=row.key,
        received_at=row.received_at,
        occurred_at=row.occurred_at,
        data=bytes(row.data),
        raw=bytes(row.raw),
        headers=dict(row.headers),
        seq=row.seq,
        trace_context=row.trace_context,
        origin=row.origin,
        derived_from=row.derived_from,
        schema_version=row.schema_version,
    )


class EventLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = sqlite if db.is_sqlite else postgresql
        self._insert = dialect.insert(events).on_conflict_do_nothing(
            index_elements=["source_id", "idempotency_key"]
        )

    async def append(self, batch: Sequence[Event]) -> list[Appended]:
        """Stores a batch in one transaction (group commit); durable when this returns."""
        rows = [event_row(e) for e in batch]
        wanted = {(e.source_id, e.idempotency_key) for e in batch}
        async with self.db.write() as conn:
            if not self.db.is_sqlite:
                # Appends take turns, so ``seq`` values commit in the order they were taken and
                # a router reading after its cursor never passes over one committed late.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOG_APPEND_LOCK)))
            await conn.execute(self._insert, rows)
            stored = await conn.execute(
                sa.select(events.c.source_id, events.c.idempotency_key, events.c.id).where(
                    sa.tuple_(events.c.source_id, events.c.idempotency_key).in_(list(wanted))
                )
            )
            ids = {(r.source_id, r.idempotency_key): r.id for r in stored}
            if not self.db.is_sqlite:
                await conn.execute(sa.select(sa.func.pg_notify(LOG_CHANNEL, "")))
        out = []
        for e in batch:
            stored_id = ids[(e.source_id, e.idempotency_key)]
            out.append(Appended(stored_id, duplicate=stored_id != e.id))
        return out

    async def read_after(self, position: int, limit: int) -> list[LogEntry]:
        query = (
            sa.select(events.c.seq, events.c.id, events.c.tenant_id, events.c.type, events.c.key)
            .where(events.c.seq > position)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [
                LogEntry(r.seq, r.id, r.tenant_id, r.type, r.key) for r in await conn.execute(query)
            ]

    async def position(self, name: str) -> int:
        async with self.db.read() as conn:
            row = (
                await conn.execute(sa.select(cursors.c.position).where(cursors.c.name == name))
            ).first()
        return 0 if row is None else int(row.position)

    async def get(self, tenant_id: str, event_id: str) -> Event | None:
        query = events.select().where(events.c.id == event_id, events.c.tenant_id == tenant_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else event_from_row(row)

    async def find(
        self, tenant_id: str, where: EventFilter, page: Page
    ) -> tuple[list[Event], str | None]:
        query = events.select().where(*event_conditions(tenant_id, where))
        return await fetch_page(self.db, query, events.c.id, page, event_from_row)

    async def known(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these ids are the tenant's events."""
        query = sa.select(events.c.id).where(
            events.c.tenant_id == tenant_id, events.c.id.in_(list(event_ids))
        )
        async with self.db.read() as conn:
            return {r.id for r in await conn.execute(query)}

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar_one()
            )
