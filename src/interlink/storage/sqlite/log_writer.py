"""The event log on SQLite through the driver: appends in one transaction per batch (all of
it or, when a statement fails, none of it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from interlink.domain.models import Event
from interlink.storage.ports import Appended, EventContent, LogEntry
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
_CONTENTS = "SELECT id, source_id, data, headers, occurred_at FROM events WHERE id IN ({})"
_CHUNK = 500  # bound parameters a statement, well under SQLite's limit

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

    async def contents(self, event_ids: Sequence[str]) -> dict[str, EventContent]:
        ids = list(event_ids)
        out: dict[str, EventContent] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            query = _CONTENTS.format(", ".join("?" * len(chunk)))

            def read(conn: sqlite3.Connection, q: str = query, p: list[str] = chunk) -> list[Any]:
                return conn.execute(q, p).fetchall()

            rows = await self._driver.read(read)
            for r in rows:
                headers = msgspec.json.decode(r[3], type=dict[str, str]) if r[3] else {}
                out[r[0]] = EventContent(r[1], bytes(r[2]), headers, r[4])
        return out

    async def position(self, name: str) -> int:
        query = "SELECT position FROM cursors WHERE name = ?"
        row = await self._driver.read(lambda c: c.execute(query, (name,)).fetchone())
        return 0 if row is None else int(row[0])
