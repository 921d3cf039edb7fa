"""Deliveries on SQLite through the driver: route, claim and settle, one transaction each."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import msgspec

from interlink.storage.ports import DUE_STATUSES, Claimed, NewDelivery, Settled
from interlink.storage.rows import GONE_REASON, delivery_rows, settlement
from interlink.storage.sqlite.driver import SqliteDriver

_DUE = ", ".join(f"'{s}'" for s in DUE_STATUSES)

_INSERT = (
    "INSERT INTO deliveries (id, tenant_id, event_id, event_seq, endpoint_id, status,"
    " attempt_count, next_attempt_at, created_at, updated_at) VALUES (:id, :tenant_id, :event_id,"
    " :event_seq, :endpoint_id, :status, :attempt_count, :next_attempt_at, :created_at,"
    " :updated_at) ON CONFLICT (event_id, endpoint_id) DO NOTHING"
)
_CURSOR = (
    "INSERT INTO cursors (name, position) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)
# Due deliveries of active endpoints, earliest first (served by ix_deliveries_due_active).
_ACTIVE_DUE = (
    f" WHERE d.status IN ({_DUE}) AND d.next_attempt_at <= ?"
    " AND e.status = 'active' AND e.deleted_at IS NULL ORDER BY d.next_attempt_at LIMIT ?"
)
_CLAIMABLE = (
    "SELECT d.id, d.tenant_id, d.event_id, d.endpoint_id, d.attempt_count, ev.type, ev.data,"
    " ev.received_at, e.url, e.secret, e.timeout_seconds, e.retry_schedule, ev.trace_context"
    " FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id"
    " JOIN events ev ON ev.id = d.event_id" + _ACTIVE_DUE
)
_NEXT_DUE = (
    "SELECT d.next_attempt_at FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id"
    + _ACTIVE_DUE
)
_LEASE = (
    "UPDATE deliveries SET status = 'in_flight', next_attempt_at = ?, lease_until = ?,"
    " updated_at = ? WHERE id = ?"
)
_ATTEMPT = (
    "INSERT INTO attempts (id, tenant_id, delivery_id, number, started_at, latency_ms, outcome,"
    " status_code, error, response_excerpt) VALUES (:id, :tenant_id, :delivery_id, :number,"
    " :started_at, :latency_ms, :outcome, :status_code, :error, :response_excerpt)"
)
_SETTLE = (
    "UPDATE deliveries SET status = :status, attempt_count = :attempt_count,"
    " next_attempt_at = :next_attempt_at, lease_until = NULL,"
    " last_status_code = :last_status_code, last_error = :last_error, updated_at = :updated_at"
    " WHERE id = :b_id AND status = 'in_flight' AND lease_until = :b_lease"
)
_DISABLE = (
    "UPDATE endpoints SET status = 'disabled', disabled_reason = ?, updated_at = ?"
    " WHERE id = ? AND tenant_id = ?"
)
_RELEASE = (
    "UPDATE deliveries SET next_attempt_at = ?, lease_until = NULL WHERE status = 'in_flight'"
)
_schedule = msgspec.json.Decoder(tuple[float, ...])


class SqliteDeliveryQueue:
    def __init__(self, driver: SqliteDriver) -> None:
        self._driver = driver

    async def route(self, batch: Sequence[NewDelivery], cursor: str, position: int) -> None:
        rows = delivery_rows(batch, time.time())

        def write(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany(_INSERT, rows)
            conn.execute(_CURSOR, (cursor, position))

        await self._driver.write(write)

    async def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[Claimed]:
        lease_until = now + lease_seconds

        def claim(conn: sqlite3.Connection) -> list[Claimed]:
            rows = conn.execute(_CLAIMABLE, (now, limit)).fetchall()
            if rows:
                conn.executemany(_LEASE, [(lease_until, lease_until, now, r[0]) for r in rows])
            return [
                Claimed(
                    delivery_id=r[0],
                    tenant_id=r[1],
                    event_id=r[2],
                    endpoint_id=r[3],
                    attempt_count=r[4],
                    lease_until=lease_until,
                    event_type=r[5],
                    event_data=bytes(r[6]),
                    received_at=r[7],
                    url=r[8],
                    secret=r[9],
                    timeout_seconds=r[10],
                    retry_schedule=_schedule.decode(r[11]),
                    trace_context=r[12],
                )
                for r in rows
            ]

        return await self._driver.write(claim)

    async def settle(self, batch: Sequence[Settled]) -> None:
        if not batch:
            return
        now = time.time()
        rows = settlement(batch, now)

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(_ATTEMPT, rows.attempts)
            conn.executemany(_SETTLE, rows.deliveries)
            for tenant_id, endpoint_id in rows.gone:
                conn.execute(_DISABLE, (GONE_REASON, now, endpoint_id, tenant_id))

        await self._driver.write(write)

    async def release_all_leases(self, now: float) -> int:
        return await self._driver.write(lambda c: c.execute(_RELEASE, (now,)).rowcount)

    async def next_due_at(self) -> float | None:
        row = await self._driver.read(lambda c: c.execute(_NEXT_DUE, (float("inf"), 1)).fetchone())
        return None if row is None else float(row[0])
