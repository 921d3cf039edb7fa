"""What the realtime streams read of the log: its head, the events after a position (every
tenant's, for the hub) and one tenant's events between two positions (a client's replay)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from interlink.domain.models import Event
from interlink.storage.database import Database
from interlink.storage.tables import events


class LogBounds(msgspec.Struct, frozen=True):
    first: int | None  # the oldest position kept; None: the log is empty
    last: int  # the newest position (0: empty)


# What a stream shows of an event: not the raw body or the kept headers.
_COLUMNS = (
    events.c.seq,
    events.c.id,
    events.c.tenant_id,
    events.c.source_id,
    events.c.idempotency_key,
    events.c.type,
    events.c.key,
    events.c.received_at,
    events.c.occurred_at,
    events.c.data,
    events.c.origin,
    events.c.derived_from,
    events.c.schema_version,
)


def _event(row: Any) -> Event:
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
        raw=b"",
        headers={},
        seq=row.seq,
        origin=row.origin,
        derived_from=row.derived_from,
        schema_version=row.schema_version,
    )


class StreamLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bounds(self) -> LogBounds:
        """The oldest and newest positions of the whole log (read in the system scope): retention
        drops the log's oldest events whatever their tenant, so what is no longer kept is told
        by the log's first position, not by a tenant's first event (which may simply be late)."""
        query = sa.select(sa.func.min(events.c.seq), sa.func.max(events.c.seq))
        async with self.db.read() as conn:
            first, last = (await conn.execute(query)).one()
        return LogBounds(None if first is None else int(first), int(last or 0))

    async def head(self) -> int:
        async with self.db.read() as conn:
            last = (await conn.execute(sa.select(sa.func.max(events.c.seq)))).scalar()
        return int(last or 0)

    async def read_after(self, position: int, limit: int) -> list[Event]:
        """Every tenant's events after ``position``, in log order (the caller's scope decides
        what the database shows: the hub reads in the system scope)."""
        query = sa.select(*_COLUMNS).where(events.c.seq > position).order_by(events.c.seq)
        async with self.db.read() as conn:
            return [_event(r) for r in await conn.execute(query.limit(limit))]

    async def replay(
        self,
        tenant_id: str,
        after: int,
        upto: int,
        sources: Sequence[str],
        keys: Sequence[str],
        limit: int,
    ) -> list[Event]:
        """One tenant's events in (after, upto], in log order, at most ``limit``; source and
        key filters are applied here, type patterns by the caller."""
        conditions = [
            events.c.tenant_id == tenant_id,
            events.c.seq > after,
            events.c.seq <= upto,
        ]
        if sources:
            conditions.append(events.c.source_id.in_(list(sources)))
        if keys:
            conditions.append(events.c.key.in_(list(keys)))
        query = sa.select(*_COLUMNS).where(*conditions).order_by(events.c.seq).limit(limit)
        async with self.db.read() as conn:
            return [_event(r) for r in await conn.execute(query)]
