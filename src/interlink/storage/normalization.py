"""The normalization stage's storage: which sources have a kit, their partner events, and one
transaction that appends canonical events, moves entity states, writes the quarantine and the
stage's cursor together — so a crash neither loses nor doubles any of it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.models import Event
from interlink.storage.cursors import move_cursor
from interlink.storage.database import Database
from interlink.storage.event_log import event_from_row, insert_new, stored_ids, take_append_turn
from interlink.storage.ports import LOG_CHANNEL
from interlink.storage.quarantine import QuarantineEntry, entry, entry_row
from interlink.storage.rows import event_row
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.partner_events import partner_events as sqlite_partner_events
from interlink.storage.tables import entity_states, events, quarantine, sources


class EntityRef(NamedTuple):
    source_id: str
    entity: str
    key: str


class EntityState(msgspec.Struct, frozen=True):
    ref: EntityRef
    tenant_id: str
    state: str
    ordinal: float | None
    event_id: str


class NormalizationStore:
    def __init__(self, db: Database, driver: SqliteDriver | None = None) -> None:
        self.db = db
        self._driver = driver
        self._dialect: Any = sqlite if db.is_sqlite else postgresql

    async def partner_events(self, after: int, upto: int) -> list[tuple[Event, str]]:
        """The events as received (not normalized ones) in (after, upto] of sources that name a
        kit now — deleted sources included: their backlog is still theirs — with the kit."""
        if self._driver is not None:
            return await sqlite_partner_events(self._driver, after, upto)
        query = (
            sa.select(events, sources.c.kit.label("source_kit"))
            .join(sources, sources.c.id == events.c.source_id)
            .where(
                events.c.seq > after,
                events.c.seq <= upto,
                sources.c.kit.is_not(None),
                events.c.derived_from.is_(None),
            )
            .order_by(events.c.seq)
        )
        async with self.db.read() as conn:
            return [(event_from_row(r), r.source_kit) for r in await conn.execute(query)]

    async def open_entries(
        self, stage: str, limit: int, *, after: str | None = None
    ) -> list[tuple[QuarantineEntry, int]]:
        """Open entries of ``stage`` after the id ``after``, oldest first, each with how many
        entries of that stage its event has had (resolved ones included): a retry's backoff."""
        async with self.db.read() as conn:
            query = (
                quarantine.select()
                .where(quarantine.c.stage == stage, quarantine.c.resolved_at.is_(None))
                .order_by(quarantine.c.id)
                .limit(limit)
            )
            if after is not None:
                query = query.where(quarantine.c.id > after)
            found = [entry(r) for r in await conn.execute(query)]
            if not found:
                return []
            counts = sa.select(quarantine.c.event_id, sa.func.count().label("n")).where(
                quarantine.c.event_id.in_([e.event_id for e in found]),
                quarantine.c.stage == stage,
            )
            tries = {
                r.event_id: int(r.n)
                for r in await conn.execute(counts.group_by(quarantine.c.event_id))
            }
        return [(e, tries.get(e.event_id, 1)) for e in found]

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[NormalizationWrite]:
        """Reads only, without the write lock (what is then written is read again under it)."""
        async with self.db.read() as conn:
            yield NormalizationWrite(conn, self._dialect, lock=False)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[NormalizationWrite]:
        async with self.db.write() as conn:
            yield NormalizationWrite(conn, self._dialect, lock=not self.db.is_sqlite)


class NormalizationWrite:
    """One transaction of the stage: what it reads here, it reads under the write lock."""

    def __init__(self, conn: AsyncConnection, dialect: Any, *, lock: bool) -> None:
        self._conn = conn
        self._dialect = dialect
        self._lock = lock  # PostgreSQL: rows read to be changed are locked (FOR UPDATE)

    def _locked(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self._lock else query

    async def entry(self, tenant_id: str, entry_id: str) -> QuarantineEntry | None:
        query = quarantine.select().where(
            quarantine.c.id == entry_id, quarantine.c.tenant_id == tenant_id
        )
        row = (await self._conn.execute(self._locked(query))).first()
        return None if row is None else entry(row)

    async def event(self, tenant_id: str, event_id: str) -> Event | None:
        query = events.select().where(events.c.id == event_id, events.c.tenant_id == tenant_id)
        row = (await self._conn.execute(query)).first()
        return None if row is None else event_from_row(row)

    async def kits_of(self, source_ids: Sequence[str]) -> dict[str, str]:
        query = sa.select(sources.c.id, sources.c.kit).where(
            sources.c.id.in_(list(source_ids)), sources.c.kit.is_not(None)
        )
        return {r.id: r.kit for r in await self._conn.execute(query)}

    async def entries_of(self, event_id: str) -> list[QuarantineEntry]:
        query = quarantine.select().where(quarantine.c.event_id == event_id)
        return [entry(r) for r in await self._conn.execute(query)]

    async def states(self, refs: Iterable[EntityRef]) -> dict[EntityRef, EntityState]:
        wanted = list(set(refs))
        if not wanted:
            return {}
        key = sa.tuple_(entity_states.c.source_id, entity_states.c.entity, entity_states.c.key)
        query = entity_states.select().where(key.in_(wanted))
        out = {}
        for r in await self._conn.execute(self._locked(query)):
            ref = EntityRef(r.source_id, r.entity, r.key)
            out[ref] = EntityState(ref, r.tenant_id, r.state, r.ordinal, r.event_id)
        return out

    async def held(self, refs: Iterable[EntityRef]) -> list[QuarantineEntry]:
        """Open held entries of these entities, oldest first."""
        wanted = list(set(refs))
        if not wanted:
            return []
        key = sa.tuple_(quarantine.c.source_id, quarantine.c.entity, quarantine.c.entity_key)
        query = (
            quarantine.select()
            .where(
                key.in_(wanted),
                quarantine.c.stage == "held",
                quarantine.c.resolved_at.is_(None),
            )
            .order_by(quarantine.c.id)
        )
        return [entry(r) for r in await self._conn.execute(self._locked(query))]

    async def existing(self, source_id: str, idempotency_keys: Sequence[str]) -> set[str]:
        if not idempotency_keys:
            return set()
        keys = [(source_id, k) for k in idempotency_keys]
        return {k for _, k in await stored_ids(self._conn, keys)}

    async def append(self, batch: Sequence[Event]) -> None:
        """Appends canonical events; one already there (same source and key) is left as it is."""
        if not batch:
            return
        await take_append_turn(self._conn)
        await insert_new(self._conn, [event_row(e) for e in batch])

    async def put_states(self, states: Sequence[EntityState]) -> None:
        if not states:
            return
        now = time.time()
        insert = self._dialect.insert(entity_states)
        upsert = insert.on_conflict_do_update(
            index_elements=["source_id", "entity", "key"],
            set_={
                "state": insert.excluded.state,
                "ordinal": insert.excluded.ordinal,
                "event_id": insert.excluded.event_id,
                "updated_at": insert.excluded.updated_at,
            },
        )
        await self._conn.execute(
            upsert,
            [
                {
                    "source_id": s.ref.source_id,
                    "entity": s.ref.entity,
                    "key": s.ref.key,
                    "tenant_id": s.tenant_id,
                    "state": s.state,
                    "ordinal": s.ordinal,
                    "event_id": s.event_id,
                    "updated_at": now,
                }
                for s in states
            ],
        )

    async def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        if entries:
            await self._conn.execute(quarantine.insert(), [entry_row(e) for e in entries])

    async def resolve(self, entry_ids: Sequence[str], resolution: str) -> None:
        if not entry_ids:
            return
        await self._conn.execute(
            quarantine.update()
            .where(quarantine.c.id.in_(list(entry_ids)), quarantine.c.resolved_at.is_(None))
            .values(resolved_at=time.time(), resolution=resolution)
        )

    async def move_cursor(self, name: str, position: int, previous: int | None = None) -> None:
        """With ``previous``: CursorMoved if another router's stage moved it first."""
        await move_cursor(self._conn, self._dialect, name, position, previous)

    async def notify_log(self) -> None:
        """Wakes the routers of other processes: there are canonical events to route."""
        if self._lock:  # PostgreSQL (SQLite is one process)
            await self._conn.execute(sa.select(sa.func.pg_notify(LOG_CHANNEL, "")))
