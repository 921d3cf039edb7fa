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
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.models import Event
from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.ports import LOG_CHANNEL, Appended, EventContent, LogEntry
from interlink.storage.rows import event_row
from interlink.storage.tables import cursors, events, idempotency_keys

# The advisory lock appends to the log take on PostgreSQL (any constant unique to Interlink).
LOG_APPEND_LOCK = 0x1A7E_106


class EventFilter(msgspec.Struct, frozen=True):
    type: str | None = None
    source_id: str | None = None
    received_after: float | None = None
    received_before: float | None = None
    key: str | None = None  # the ordering key (the console's search)


def event_conditions(tenant_id: str, where: EventFilter) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = [events.c.tenant_id == tenant_id]
    if where.type:
        out.append(events.c.type == where.type)
    if where.source_id:
        out.append(events.c.source_id == where.source_id)
    if where.key:
        out.append(events.c.key == where.key)
    if where.received_after is not None:
        out.append(events.c.received_at >= where.received_after)
    if where.received_before is not None:
        out.append(events.c.received_at < where.received_before)
    return out


def _claim_keys(rows: Sequence[dict[str, Any]]) -> sa.Insert:
    insert = postgresql.insert(idempotency_keys).values(
        [
            {
                "source_id": r["source_id"],
                "idempotency_key": r["idempotency_key"],
                "event_id": r["id"],
                "tenant_id": r["tenant_id"],
                "received_at": r["received_at"],
            }
            for r in rows
        ]
    )
    # A key held already is left alone (no row version, no lock): RETURNING names the keys
    # this statement claimed, and the duplicates' events are read after, only when there are
    # any — a partner's retry is the exception, and it should not write to be answered.
    return insert.on_conflict_do_nothing(
        index_elements=["source_id", "idempotency_key"],
    ).returning(
        idempotency_keys.c.source_id,
        idempotency_keys.c.idempotency_key,
        idempotency_keys.c.event_id,
    )


_SQLITE_INSERT = sqlite.insert(events).on_conflict_do_nothing(
    index_elements=["source_id", "idempotency_key"]
)

Key = tuple[str, str]  # (source id, idempotency key)


async def insert_new(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> dict[Key, str]:
    """Stores the events whose (source, idempotency key) the log does not hold yet, and answers
    the id of the event stored under each key: the new one, or the one first stored. On
    PostgreSQL the key is claimed in ``idempotency_keys`` first (its primary key is what makes
    dedupe exact across the partitions of events), and only the events whose key this
    statement claimed are written."""
    if not rows:
        return {}
    if conn.dialect.name == "sqlite":
        await conn.execute(_SQLITE_INSERT, list(rows))
        return await stored_ids(conn, list({(r["source_id"], r["idempotency_key"]) for r in rows}))
    first: dict[Key, dict[str, Any]] = {}
    for r in rows:  # a key twice in one batch: its first event (one statement claims a key once)
        first.setdefault((r["source_id"], r["idempotency_key"]), r)
    held = {
        (k.source_id, k.idempotency_key): k.event_id
        for k in await conn.execute(_claim_keys(list(first.values())))
    }
    new = [r for key, r in first.items() if held.get(key) == r["id"]]
    if new:
        await conn.execute(events.insert(), new)
    if len(held) < len(first):
        held.update(await stored_ids(conn, [key for key in first if key not in held]))
    return held


async def stored_ids(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The id of the event the log holds under each (source, idempotency key) it holds."""
    if not keys:
        return {}
    on_sqlite = conn.dialect.name == "sqlite"
    table = events if on_sqlite else idempotency_keys
    id_column = events.c.id if on_sqlite else idempotency_keys.c.event_id
    query = sa.select(table.c.source_id, table.c.idempotency_key, id_column.label("id")).where(
        sa.tuple_(table.c.source_id, table.c.idempotency_key).in_(list(keys))
    )
    return {(r.source_id, r.idempotency_key): r.id for r in await conn.execute(query)}


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


async def take_append_turn(conn: AsyncConnection) -> None:
    """Every transaction that inserts into the log calls this first (ingest, publishing,
    normalized events, operator events). On PostgreSQL appends take turns, so ``seq`` values
    commit in the order they were taken and a reader after its position (the router, a stream)
    never passes over one committed late; the notice wakes readers in other processes when the
    transaction commits. SQLite has one writer: its appends take turns already."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOG_APPEND_LOCK)))
        await conn.execute(sa.select(sa.func.pg_notify(LOG_CHANNEL, "")))


class EventLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, batch: Sequence[Event]) -> list[Appended]:
        """Stores a batch in one transaction (group commit); durable when this returns."""
        rows = [event_row(e) for e in batch]
        async with self.db.write() as conn:
            await take_append_turn(conn)
            ids = await insert_new(conn, rows)
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

    async def contents(self, entries: Sequence[LogEntry]) -> dict[str, EventContent]:
        if not entries:
            return {}
        # By seq, which every partition indexes: an id alone would probe each partition.
        seqs = [e.seq for e in entries]
        query = sa.select(
            events.c.id, events.c.source_id, events.c.data, events.c.headers, events.c.occurred_at
        ).where(events.c.seq.in_(seqs), events.c.seq.between(min(seqs), max(seqs)))
        async with self.db.read() as conn:
            return {
                r.id: EventContent(r.source_id, bytes(r.data), dict(r.headers), r.occurred_at)
                for r in await conn.execute(query)
            }

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


async def first_at_or_after(conn: AsyncConnection, since: float, head: int) -> int | None:
    """The first log position received at or after ``since``: a binary search on ``seq``
    (``received_at`` grows with ``seq``, give or take a batch), each probe one seek."""
    lo_row = (await conn.execute(sa.select(sa.func.min(events.c.seq)))).scalar()
    if lo_row is None:
        return None
    lo, hi = int(lo_row), head + 1
    probe = sa.select(events.c.received_at).where(events.c.seq >= sa.bindparam("p"))
    probe = probe.order_by(events.c.seq).limit(1)
    while lo < hi:
        mid = (lo + hi) // 2
        at = (await conn.execute(probe, {"p": mid})).scalar()
        if at is None or at >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo <= head else None
