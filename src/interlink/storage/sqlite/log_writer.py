"""The event log on SQLite through the driver: appends in one transaction per batch (all of
it or, when a statement fails, none of it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from interlink.domain.models import Event
from interlink.storage.ports import Appended, LogEntry
from interlink.storage.rows import event_row
from interlink.storage.sqlite.driver import SqliteDriver

INSERT_EVENT = (
    "INSERT INTO events (id, tenant_id, source_id, idempotency_key, type, key, received_at,"
    " occurred_at, data, raw, headers, trace_context, origin, derived_from, schema_version)"
    " VALUES (:id, :tenant_id, :source_id, :idempotency_key, :type, :key, :received_at,"
    " :occurred_at, :data, :raw, :headers, :trace_context, :origin, :derived_from,"
    " :schema_version)"
    " ON CONFLICT (source_id, idempotency_key) DO NOTHING"
)
_FIRST = "SELECT id FROM events WHERE source_id = ? AND idempotency_key = ?"


def event_values(event: Event) -> dict[str, Any]:
    row = event_row(event)
    row["headers"] = msgspec.json.encode(row["headers"]).decode()
    return row


class SqliteLogWriter:
    def __init__(self, driver: SqliteDriver) -> None:
        self._driver = driver

    async def append(self, batch: Sequence[Event]) -> list[Appended]:
        rows = [event_values(e) for e in batch]

        def insert(conn: sqlite3.Connection) -> list[Appended]:
            out = []
            for row in rows:
                if conn.execute(INSERT_EVENT, row).rowcount == 1:
                    out.append(Appended(row["id"], duplicate=False))
                    continue
                (first,) = conn.execute(
                    _FIRST, (row["source_id"], row["idempotency_key"])
                ).fetchone()
                out.append(Appended(first, duplicate=True))
            return out

        return await self._driver.write(insert)

    async def read_after(self, position: int, limit: int) -> list[LogEntry]:
        query = (
            "SELECT seq, id, tenant_id, type, key FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        rows = await self._driver.read(lambda c: c.execute(query, (position, limit)).fetchall())
        return [LogEntry(*r) for r in rows]

    async def position(self, name: str) -> int:
        query = "SELECT position FROM cursors WHERE name = ?"
        row = await self._driver.read(lambda c: c.execute(query, (name,)).fetchone())
        return 0 if row is None else int(row[0])
