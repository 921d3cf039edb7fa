"""The normalization stage's one read per router batch, on SQLite through the hot-path driver:
through SQLAlchemy it would cost the router milliseconds a batch (a thread hop per statement)."""

from __future__ import annotations

import sqlite3

import msgspec

from interlink.domain.models import Event
from interlink.storage.sqlite.driver import SqliteDriver

_QUERY = (
    "SELECT e.id, e.tenant_id, e.source_id, e.idempotency_key, e.type, e.key, e.received_at,"
    " e.occurred_at, e.data, e.raw, e.headers, e.seq, e.trace_context, s.kit"
    " FROM events e JOIN sources s ON s.id = e.source_id"
    " WHERE e.seq > ? AND e.seq <= ? AND s.kit IS NOT NULL AND e.derived_from IS NULL"
    " ORDER BY e.seq"
)
_headers = msgspec.json.Decoder(dict[str, str])


async def partner_events(driver: SqliteDriver, after: int, upto: int) -> list[tuple[Event, str]]:
    def read(conn: sqlite3.Connection) -> list[tuple[Event, str]]:
        return [
            (
                Event(
                    id=r[0],
                    tenant_id=r[1],
                    source_id=r[2],
                    idempotency_key=r[3],
                    type=r[4],
                    key=r[5],
                    received_at=r[6],
                    occurred_at=r[7],
                    data=bytes(r[8]),
                    raw=bytes(r[9]),
                    headers=_headers.decode(r[10]),
                    seq=r[11],
                    trace_context=r[12],
                ),
                r[13],
            )
            for r in conn.execute(_QUERY, (after, upto))
        ]

    return await driver.read(read)
