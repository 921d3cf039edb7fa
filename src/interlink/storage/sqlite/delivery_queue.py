"""Deliveries on SQLite through the driver: route, claim and settle, one transaction each."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Sequence

import msgspec

from interlink.domain.lanes import LanePolicy, LaneState, admit
from interlink.domain.models import EndpointKind
from interlink.storage import pull_claims
from interlink.storage.lanes import (
    DEFERRED,
    LIVE_LEASE,
    UNLEASED_STATUS,
    decode_state,
    kafka_target,
    lane_row,
    lanes_of,
    policy_of,
    restarted_lanes,
    settle_lanes,
)
from interlink.storage.ports import (
    DUE_STATUSES,
    Claimed,
    CursorMoved,
    LaneNotice,
    NewDelivery,
    Settled,
)
from interlink.storage.rows import delivery_rows, settlement
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.log_writer import INSERT_EVENT, event_values

_DUE = ", ".join(f"'{s}'" for s in DUE_STATUSES)

_INSERT = (
    "INSERT INTO deliveries (id, tenant_id, event_id, event_seq, endpoint_id, key, endpoint_kind,"
    " status, attempt_count, next_attempt_at, created_at, updated_at, subscription_id) VALUES"
    " (:id, :tenant_id, :event_id, :event_seq, :endpoint_id, :key, :endpoint_kind, :status,"
    " :attempt_count, :next_attempt_at, :created_at, :updated_at, :subscription_id)"
    " ON CONFLICT (event_id, endpoint_id) DO NOTHING"
)
_CURSOR = (
    "INSERT INTO cursors (name, position) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)
_MOVE_CURSOR = "UPDATE cursors SET position = ? WHERE name = ? AND position = ?"
_NEW_CURSOR = "INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
# An ordered endpoint's delivery is due only as the head of its key: no live (or, with
# on_head_dead = wait, dead) delivery of the same key lies before it in the log
# (domain/ordering.py; served by ix_deliveries_key_head).
_HEAD = (
    " AND (e.ordering = 'unordered' OR d.key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries p"
    " WHERE p.endpoint_id = d.endpoint_id AND p.key IS NOT NULL AND p.key = d.key"
    " AND p.event_seq < d.event_seq"
    " AND p.status IN ('pending', 'scheduled', 'in_flight', 'dead')"
    " AND (p.status <> 'dead' OR e.on_head_dead = 'wait')))"
)
# Due deliveries of active push endpoints, earliest first (served by ix_deliveries_due_push); a
# pull endpoint's claim has its own query (storage/pull_claims.py).
_PUSH_DUE = (
    " FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id"
    f" WHERE d.status IN ({_DUE}) AND d.endpoint_kind = 'push' AND d.next_attempt_at <= ?"
    " AND e.status = 'active' AND e.deleted_at IS NULL"
)
_CANDIDATES = (
    "SELECT d.id, d.endpoint_id" + _PUSH_DUE + _HEAD + " ORDER BY d.next_attempt_at LIMIT ?"
)
_NEXT_DUE = "SELECT d.next_attempt_at" + _PUSH_DUE + " ORDER BY d.next_attempt_at LIMIT 1"
_PULL_ENDPOINTS = "SELECT id FROM endpoints WHERE kind = 'pull' AND id IN ({})"
_LANES = (
    "SELECT e.id, e.concurrency, e.rate_limit, e.timeout_seconds, e.disable_after_seconds,"
    " l.state, e.tenant_id, e.breaker"
    " FROM endpoints e LEFT JOIN endpoint_lanes l ON l.endpoint_id = e.id"
    " WHERE e.id IN ({})"
)
_IN_FLIGHT = (
    "SELECT endpoint_id, count(*) FROM deliveries WHERE endpoint_id IN ({}) AND "
    + LIVE_LEASE.format(now="?")
    + " GROUP BY endpoint_id"
)
_STATES = "SELECT endpoint_id, state FROM endpoint_lanes WHERE endpoint_id IN ({})"
_SAVE_LANE = (
    "INSERT INTO endpoint_lanes (endpoint_id, tenant_id, state, breaker, updated_at)"
    " VALUES (:endpoint_id, :tenant_id, :state, :breaker, :updated_at)"
    " ON CONFLICT (endpoint_id) DO UPDATE SET state = excluded.state,"
    " breaker = excluded.breaker, updated_at = excluded.updated_at"
)
_CLAIMED = (
    "SELECT d.id, d.tenant_id, d.event_id, d.endpoint_id, d.attempt_count, ev.type, ev.data,"
    " ev.received_at, e.url, e.secret, e.timeout_seconds, e.retry_schedule, ev.trace_context,"
    " ev.key, ev.occurred_at, e.kind, e.kafka, s.transform, ev.source_id, ev.headers"
    " FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id"
    " JOIN events ev ON ev.id = d.event_id"
    " LEFT JOIN subscriptions s ON s.id = d.subscription_id WHERE d.id IN ({})"
)
_LEASE = (
    "UPDATE deliveries SET status = 'in_flight', next_attempt_at = ?, lease_until = ?,"
    " updated_at = ? WHERE id = ?"
)
_EXTEND = (
    "UPDATE deliveries SET lease_until = ?, next_attempt_at = ?"
    " WHERE id = ? AND status = 'in_flight' AND lease_until = ?"
)
_DEFER = (
    f"UPDATE deliveries SET next_attempt_at = ?, status = {UNLEASED_STATUS}, lease_until = NULL"
    " WHERE id = ?"
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
    " WHERE id = ? AND tenant_id = ? AND status <> 'disabled'"
)
# Waiting for an endpoint whose breaker closed: due at a random time within the drain window.
_WAITING = (
    "SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status IN ('pending', 'scheduled')"
    " AND next_attempt_at > ?"
)
_DRAIN = (
    "UPDATE deliveries SET next_attempt_at = ? + (random() / 18446744073709551616.0 + 0.5) * ?"
    " WHERE endpoint_id = ? AND status IN ('pending', 'scheduled') AND next_attempt_at > ?"
)
_RELEASE = (
    f"UPDATE deliveries SET status = {UNLEASED_STATUS}, next_attempt_at = :now,"
    " lease_until = NULL, updated_at = :now WHERE status = 'in_flight'"
)
_UNDEFER = "UPDATE deliveries SET next_attempt_at = :now WHERE " + DEFERRED.format(now=":now")
_ALL_STATES = "SELECT endpoint_id, state FROM endpoint_lanes"
_RESTART_LANE = (
    "UPDATE endpoint_lanes SET state = :b_state, updated_at = :b_at WHERE endpoint_id = :b_id"
)
_schedule = msgspec.json.Decoder(tuple[float, ...])


def _headers(transform: str | None, stored: str | None) -> dict[str, str] | None:
    # Decoded only for a transformation ($event.headers): a plain delivery never needs them.
    if transform is None or stored is None:
        return None
    return msgspec.json.decode(stored, type=dict[str, str])


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _pull_candidates(
    conn: sqlite3.Connection, endpoint_id: str, now: float, limit: int
) -> list[tuple[str, str]]:
    """A consumer's claim candidates (storage/pull_claims.py); none unless the endpoint is an
    active pull endpoint."""
    params = {"endpoint": endpoint_id, "now": now, "limit": limit}
    found = conn.execute(pull_claims.ENDPOINT, params).fetchone()
    if found is None:
        return []
    query = pull_claims.candidates(found[0], found[1], postgres=False)
    return [(r[0], r[1]) for r in conn.execute(query, params)]


class SqliteDeliveryQueue:
    def __init__(self, driver: SqliteDriver, rng: random.Random | None = None) -> None:
        self._driver = driver
        self._rng = rng or random.Random()

    async def route(
        self,
        batch: Sequence[NewDelivery],
        cursor: str,
        position: int,
        previous: int | None = None,
    ) -> None:
        endpoint_ids = list({d.endpoint_id for d in batch})

        def write(conn: sqlite3.Connection) -> None:
            pull = conn.execute(_PULL_ENDPOINTS.format(_marks(len(endpoint_ids))), endpoint_ids)
            rows = delivery_rows(batch, time.time(), {r[0] for r in pull})
            if previous is None:
                conn.execute(_CURSOR, (cursor, position))
            elif not conn.execute(_MOVE_CURSOR, (position, cursor, previous)).rowcount and not (
                previous == 0 and conn.execute(_NEW_CURSOR, (cursor, position)).rowcount
            ):
                raise CursorMoved(cursor)
            if rows:
                conn.executemany(_INSERT, rows)

        await self._driver.write(write)

    async def claim_due(
        self, now: float, limit: int, lease_seconds: float, endpoint_id: str | None = None
    ) -> list[Claimed]:
        lease_until = now + lease_seconds

        def claim(conn: sqlite3.Connection) -> list[Claimed]:
            if endpoint_id is None:
                candidates = conn.execute(_CANDIDATES, (now, limit)).fetchall()
            else:
                candidates = _pull_candidates(conn, endpoint_id, now, limit)
            if not candidates:
                return []
            endpoint_ids = list({r[1] for r in candidates})
            marks = _marks(len(endpoint_ids))
            policies: dict[str, LanePolicy] = {}
            states: dict[str, LaneState] = {}
            tenants: dict[str, str] = {}
            for r in conn.execute(_LANES.format(marks), endpoint_ids):
                policies[r[0]] = policy_of(r[1], r[2], r[3], r[4], r[7])
                states[r[0]] = decode_state(r[5])
                tenants[r[0]] = r[6]
            in_flight = dict(conn.execute(_IN_FLIGHT.format(marks), (*endpoint_ids, now)))
            admission = admit(candidates, lanes_of(policies, states, in_flight), now, self._rng)
            if admission.deferred:
                conn.executemany(_DEFER, [(at, d) for d, at in admission.deferred])
            if admission.states:
                saved = [lane_row(e, tenants[e], st, now) for e, st in admission.states.items()]
                conn.executemany(_SAVE_LANE, saved)
            granted = admission.granted
            if not granted:
                return []
            conn.executemany(_LEASE, [(lease_until, lease_until, now, d) for d in granted])
            rows = conn.execute(_CLAIMED.format(_marks(len(granted))), granted).fetchall()
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
                    lane=policies[r[3]],
                    key=r[13],
                    occurred_at=r[14],
                    kind=EndpointKind(r[15]),
                    kafka=kafka_target(r[16]),
                    transform=r[17],
                    source_id=r[18],
                    headers=_headers(r[17], r[19]),
                )
                for r in rows
            ]

        return await self._driver.write(claim)

    async def settle(self, batch: Sequence[Settled], now: float | None = None) -> list[LaneNotice]:
        if not batch:
            return []
        at = time.time() if now is None else now
        notices = await self._driver.write(lambda c: self._settle(c, batch, at, held_only=False))
        return notices or []

    async def settle_held(self, settled: Settled, now: float) -> bool:
        notices = await self._driver.write(
            lambda c: self._settle(c, [settled], now, held_only=True)
        )
        return notices is not None

    def _settle(
        self, conn: sqlite3.Connection, batch: Sequence[Settled], now: float, *, held_only: bool
    ) -> list[LaneNotice] | None:
        """The settlement in the writer's transaction; None (nothing written) when
        ``held_only`` and the one delivery's lease no longer holds."""
        rows = settlement(batch, now)
        endpoint_ids = list({s.claimed.endpoint_id for s in batch})
        updated = conn.executemany(_SETTLE, rows.deliveries).rowcount
        if held_only and updated != 1:
            return None
        conn.executemany(_ATTEMPT, rows.attempts)
        states = {
            e: decode_state(text)
            for e, text in conn.execute(_STATES.format(_marks(len(endpoint_ids))), endpoint_ids)
        }
        lanes = settle_lanes(batch, states, now, self._rng)
        conn.executemany(_SAVE_LANE, lanes.rows)
        events = list(lanes.events)
        notices = list(lanes.notices)
        for d in lanes.disabled:
            if conn.execute(_DISABLE, (d.reason, now, d.endpoint_id, d.tenant_id)).rowcount:
                events.append(d.event)
                notices.append(d.notice)
        for event in events:
            conn.execute(INSERT_EVENT, event_values(event))
        for r in lanes.released:
            (waiting,) = conn.execute(_WAITING, (r.endpoint_id, now)).fetchone()
            if waiting:
                conn.execute(_DRAIN, (now, r.window(waiting), r.endpoint_id, now))
        return notices

    async def extend_lease(self, delivery_id: str, lease_until: float, extended: float) -> bool:
        def extend(conn: sqlite3.Connection) -> bool:
            args = (extended, extended, delivery_id, lease_until)
            return bool(conn.execute(_EXTEND, args).rowcount == 1)

        return await self._driver.write(extend)

    async def release_all_leases(self, now: float) -> int:
        def release(conn: sqlite3.Connection) -> int:
            released = conn.execute(_RELEASE, {"now": now}).rowcount
            conn.execute(_UNDEFER, {"now": now})
            conn.executemany(_RESTART_LANE, restarted_lanes(conn.execute(_ALL_STATES), now))
            return released

        return await self._driver.write(release)

    async def claimable(self, endpoint_ids: Sequence[str], now: float) -> set[str]:
        def probe(conn: sqlite3.Connection) -> set[str]:
            return {e for e in endpoint_ids if _pull_candidates(conn, e, now, 1)}

        return await self._driver.read(probe) if endpoint_ids else set()

    async def next_due_at(self) -> float | None:
        row = await self._driver.read(lambda c: c.execute(_NEXT_DUE, (float("inf"),)).fetchone())
        return None if row is None else float(row[0])
