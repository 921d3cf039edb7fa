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
_COLUMNS = "SELECT id, source_id, data, headers, occurred_at, seq FROM events"
_CONTENTS = _COLUMNS + " WHERE seq IN ({})"  # at most a router batch (1,000) of them
_CONTENTS_RANGE = _COLUMNS + " WHERE seq BETWEEN ? AND ?"

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

    async def contents(self, entries: Sequence[LogEntry]) -> dict[str, EventContent]:
        if not entries:
            return {}
        wanted = {e.seq for e in entries}
        lo, hi = min(wanted), max(wanted)

        def read(conn: sqlite3.Connection) -> list[Any]:
            # By rowid (seq): one range when most of it is wanted, else each by itself.
            if len(wanted) * 4 >= hi - lo + 1:
                return conn.execute(_CONTENTS_RANGE, (lo, hi)).fetchall()
            marks = ", ".join("?" * len(wanted))
            return conn.execute(_CONTENTS.format(marks), sorted(wanted)).fetchall()

        out: dict[str, EventContent] = {}
        for r in await self._driver.read(read):
            if r[5] in wanted:
                headers = msgspec.json.decode(r[3], type=dict[str, str]) if r[3] else {}
                out[r[0]] = EventContent(r[1], bytes(r[2]), headers, r[4])
        return out

    async def position(self, name: str) -> int:
        query = "SELECT position FROM cursors WHERE name = ?"
        row = await self._driver.read(lambda c: c.execute(query, (name,)).fetchone())
        return 0 if row is None else int(row[0])
