"""Deliveries and their attempts: created by the router, claimed and settled by the dispatcher.

A claimed delivery's ``next_attempt_at`` is its lease expiry, so a delivery held by a process
that died becomes due again on its own; results are written only while the lease still holds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.delivery import DeliveryStatus
from interlink.domain.ids import new_id
from interlink.domain.lanes import LanePolicy, LaneState, admit
from interlink.domain.models import EndpointKind, EndpointStatus
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.storage import pull_claims
from interlink.storage.cursors import move_cursor
from interlink.storage.database import Database
from interlink.storage.event_log import take_append_turn
from interlink.storage.lanes import (
    UNLEASED_STATUS,
    Release,
    decode_state,
    deferred,
    kafka_target,
    lane_row,
    lanes_of,
    live_lease,
    policy_of,
    restarted_lanes,
    settle_lanes,
)
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.ports import (
    DELIVERIES_CHANNEL,
    DUE_STATUSES,
    Claimed,
    LaneNotice,
    NewDelivery,
    Settled,
)
from interlink.storage.rows import delivery_rows, event_row, settlement
from interlink.storage.tables import (
    attempts,
    deliveries,
    endpoint_lanes,
    endpoints,
    events,
    subscriptions,
)

# Statuses that can head an ordered key (dead only holds it with on_head_dead = wait).
HEAD_STATUSES = ("pending", "scheduled", "in_flight", "dead")


def _literal_list(name: str, values: Sequence[str]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, list(values), expanding=True, literal_execute=True)


class Delivery(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    event_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    next_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    created_at: float
    updated_at: float


class Attempt(msgspec.Struct, frozen=True):
    id: str
    delivery_id: str
    number: int
    started_at: float
    latency_ms: float
    outcome: str
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryFilter(msgspec.Struct, frozen=True):
    status: str | None = None
    endpoint_id: str | None = None
    event_id: str | None = None
    type: str | None = None  # the event's type
    created_after: float | None = None
    created_before: float | None = None


def delivery_conditions(tenant_id: str, where: DeliveryFilter) -> list[sa.ColumnElement[bool]]:
    """The filter as SQL. A status is inlined, not bound: under a generic plan (asyncpg
    prepares statements) PostgreSQL uses a partial index such as ix_deliveries_dead_tenant only
    when the query names its status as a constant."""
    out: list[sa.ColumnElement[bool]] = [deliveries.c.tenant_id == tenant_id]
    if where.status:
        out.append(
            deliveries.c.status == sa.bindparam("status", where.status, literal_execute=True)
        )
    if where.endpoint_id:
        out.append(deliveries.c.endpoint_id == where.endpoint_id)
    if where.event_id:
        out.append(deliveries.c.event_id == where.event_id)
    if where.type:
        # Each delivery's event by its primary key: no index over events by type, which every
        # ingest would pay for.
        out.append(
            sa.exists().where(
                events.c.id == deliveries.c.event_id,
                events.c.tenant_id == tenant_id,
                events.c.type == where.type,
            )
        )
    if where.created_after is not None:
        out.append(deliveries.c.created_at >= where.created_after)
    if where.created_before is not None:
        out.append(deliveries.c.created_at < where.created_before)
    return out


def requeue(now: float, *where: sa.ColumnElement[bool]) -> sa.Update:
    """Back to pending and due now, in place (so the ``webhook-id`` stays), unless in flight."""
    return (
        deliveries.update()
        .where(*where, deliveries.c.status != DeliveryStatus.IN_FLIGHT.value)
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, updated_at=now)
    )


class Held(msgspec.Struct, frozen=True):
    """A delivery as a consumer's ack or nack finds it: its endpoint's kind, its status and
    the lease on it, and what settling it takes (``claimed``, under that lease)."""

    kind: EndpointKind
    status: str
    lease_until: float | None
    claimed: Claimed


class RetryRefused(Exception):
    """The delivery is being sent right now; a second send would race it."""


def attempt_from_row(r: Any) -> Attempt:
    return Attempt(
        id=r.id,
        delivery_id=r.delivery_id,
        number=r.number,
        started_at=r.started_at,
        latency_ms=r.latency_ms,
        outcome=r.outcome,
        status_code=r.status_code,
        error=r.error,
        response_excerpt=r.response_excerpt,
    )


def delivery_from_row(row: Any) -> Delivery:
    status = row.status
    next_at = row.next_attempt_at if status in ("pending", "scheduled") else None
    return Delivery(
        id=row.id,
        tenant_id=row.tenant_id,
        event_id=row.event_id,
        endpoint_id=row.endpoint_id,
        status=status,
        attempt_count=row.attempt_count,
        next_attempt_at=next_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _strip_nul(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """PostgreSQL text cannot hold NUL, which a receiver's answer may: U+FFFD stands in for it
    in these excerpts (already lossy), rather than the whole settlement batch failing."""
    for row in rows:
        for column in columns:
            value = row.get(column)
            if value is not None and "\x00" in value:
                row[column] = value.replace("\x00", "\ufffd")


class Deliveries:
    def __init__(self, db: Database, rng: random.Random | None = None) -> None:
        self.db = db
        self._rng = rng or random.Random()
        dialect = sqlite if db.is_sqlite else postgresql
        self._insert = dialect.insert(deliveries).on_conflict_do_nothing(
            index_elements=["event_id", "endpoint_id"]
        )
        self._dialect = dialect

    # router ------------------------------------------------------------------------------------

    async def route(
        self,
        batch: Sequence[NewDelivery],
        cursor: str,
        position: int,
        previous: int | None = None,
    ) -> None:
        """Creates a batch of deliveries and moves the router's cursor, atomically."""
        now = time.time()
        async with self.db.write() as conn:
            # The cursor first: a second router blocks on its row, then finds it moved.
            await self._move_cursor(conn, cursor, position, previous)
            if batch:
                await conn.execute(self._insert, await self._rows(conn, batch, now))
                if not self.db.is_sqlite:
                    await conn.execute(sa.select(sa.func.pg_notify(DELIVERIES_CHANNEL, "")))

    @staticmethod
    async def _rows(
        conn: AsyncConnection, batch: Sequence[NewDelivery], now: float
    ) -> list[dict[str, Any]]:
        """The deliveries' rows, each with its endpoint's kind."""
        ids = list({d.endpoint_id for d in batch})
        pull = await conn.execute(
            sa.select(endpoints.c.id).where(
                endpoints.c.id.in_(ids), endpoints.c.kind == EndpointKind.PULL.value
            )
        )
        return delivery_rows(batch, now, {r.id for r in pull})

    async def _move_cursor(
        self, conn: AsyncConnection, name: str, position: int, previous: int | None
    ) -> None:
        await move_cursor(conn, self._dialect, name, position, previous)

    # dispatcher --------------------------------------------------------------------------------

    def _due(self, now: float) -> sa.Select[Any]:
        """Due deliveries the dispatcher sends (endpoint_kind 'push': push and Kafka endpoints)."""
        return (
            sa.select(deliveries.c.id)
            .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
            .where(
                # Inline literals, not bound parameters: under a generic plan (asyncpg prepares
                # statements) PostgreSQL can only use the partial index ix_deliveries_due_push
                # when the query names its statuses and kind as constants.
                deliveries.c.status.in_(_literal_list("due_statuses", DUE_STATUSES)),
                deliveries.c.endpoint_kind
                == sa.bindparam("push", EndpointKind.PUSH.value, literal_execute=True),
                deliveries.c.next_attempt_at <= now,
                endpoints.c.status == EndpointStatus.ACTIVE.value,
                endpoints.c.deleted_at.is_(None),
            )
        )

    @staticmethod
    def _head() -> sa.ColumnElement[bool]:
        # An ordered endpoint's delivery is due only as the head of its key: no live (or, with
        # on_head_dead = wait, dead) delivery of its key before it in the log
        # (domain/ordering.py; served by ix_deliveries_key_head).
        p = deliveries.alias("p")
        before = sa.exists().where(
            p.c.endpoint_id == deliveries.c.endpoint_id,
            p.c.key.is_not(None),
            p.c.key == deliveries.c.key,
            p.c.event_seq < deliveries.c.event_seq,
            p.c.status.in_(_literal_list("head_statuses", HEAD_STATUSES)),
            sa.or_(
                p.c.status != DeliveryStatus.DEAD.value,
                endpoints.c.on_head_dead == OnHeadDead.WAIT.value,
            ),
        )
        return sa.or_(
            endpoints.c.ordering == Ordering.UNORDERED.value,
            deliveries.c.key.is_(None),
            ~before,
        )

    def _candidates(self, now: float, limit: int) -> sa.Select[Any]:
        pick = (
            self._due(now)
            .add_columns(deliveries.c.endpoint_id)
            .where(self._head())
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if not self.db.is_sqlite:
            pick = pick.with_for_update(of=deliveries, skip_locked=True)
        return pick

    async def _pull_candidates(
        self, conn: AsyncConnection, endpoint_id: str, now: float, limit: int, *, lock: bool
    ) -> list[tuple[str, str]]:
        """A consumer's claim candidates (storage/pull_claims.py); none unless the endpoint is
        an active pull endpoint."""
        params = {"endpoint": endpoint_id, "now": now, "limit": limit}
        found = (await conn.execute(sa.text(pull_claims.ENDPOINT), params)).first()
        if found is None:
            return []
        query = pull_claims.candidates(
            found.ordering, found.on_head_dead, postgres=not self.db.is_sqlite, lock=lock
        )
        return [(r.id, r.endpoint_id) for r in await conn.execute(sa.text(query), params)]

    async def claimable(self, endpoint_ids: Sequence[str], now: float) -> set[str]:
        """Which of these pull endpoints have a delivery to claim: one read, a candidate
        query per endpoint (as cheap as a claim's)."""
        if not endpoint_ids:
            return set()
        ready = set()
        async with self.db.read() as conn:
            for endpoint_id in endpoint_ids:
                if await self._pull_candidates(conn, endpoint_id, now, 1, lock=False):
                    ready.add(endpoint_id)
        return ready

    async def _lanes(
        self, conn: AsyncConnection, endpoint_ids: list[str], now: float
    ) -> tuple[dict[str, LanePolicy], dict[str, LaneState], dict[str, str]]:
        rows = (
            await conn.execute(
                sa.select(
                    endpoints.c.id,
                    endpoints.c.tenant_id,
                    endpoints.c.concurrency,
                    endpoints.c.rate_limit,
                    endpoints.c.timeout_seconds,
                    endpoints.c.disable_after_seconds,
                    endpoints.c.breaker,
                ).where(endpoints.c.id.in_(endpoint_ids))
            )
        ).all()
        tenants = {r.id: r.tenant_id for r in rows}
        policies = {
            r.id: policy_of(
                r.concurrency, r.rate_limit, r.timeout_seconds, r.disable_after_seconds, r.breaker
            )
            for r in rows
        }
        return policies, await self._lock_states(conn, tenants, now), tenants

    async def _lock_states(
        self, conn: AsyncConnection, tenants: dict[str, str], now: float
    ) -> dict[str, LaneState]:
        """The endpoints' lane states, locked until the transaction ends on PostgreSQL, so
        dispatchers in other processes read and write them one at a time."""

        def locked(ids: list[str]) -> sa.Select[Any]:
            query = sa.select(endpoint_lanes.c.endpoint_id, endpoint_lanes.c.state).where(
                endpoint_lanes.c.endpoint_id.in_(ids)
            )
            if self.db.is_sqlite:
                return query
            return query.order_by(endpoint_lanes.c.endpoint_id).with_for_update()

        states = {
            r.endpoint_id: decode_state(r.state) for r in await conn.execute(locked(list(tenants)))
        }
        missing = sorted(set(tenants) - states.keys())
        if missing and not self.db.is_sqlite:
            # A lane's first use: its row must exist to be locked (another process may be
            # creating it at the same moment, hence DO NOTHING and a second look).
            fresh = [lane_row(e, tenants[e], LaneState(), now) for e in missing]
            await conn.execute(
                postgresql.insert(endpoint_lanes).on_conflict_do_nothing(
                    index_elements=["endpoint_id"]
                ),
                fresh,
            )
            for r in await conn.execute(locked(missing)):
                states[r.endpoint_id] = decode_state(r.state)
        return states

    async def _save_lanes(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        upsert = self._dialect.insert(endpoint_lanes)
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["endpoint_id"],
                set_={
                    "state": upsert.excluded.state,
                    "breaker": upsert.excluded.breaker,
                    "updated_at": upsert.excluded.updated_at,
                },
            ),
            rows,
        )

    async def claim_due(
        self, now: float, limit: int, lease_seconds: float, endpoint_id: str | None = None
    ) -> list[Claimed]:
        lease_until = now + lease_seconds
        async with self.db.write() as conn:
            if endpoint_id is None:
                picked = await conn.execute(self._candidates(now, limit))
                candidates = [(r.id, r.endpoint_id) for r in picked]
            else:
                lock = not self.db.is_sqlite
                candidates = await self._pull_candidates(conn, endpoint_id, now, limit, lock=lock)
            if not candidates:
                return []
            endpoint_ids = sorted({e for _, e in candidates})
            policies, states, tenants = await self._lanes(conn, endpoint_ids, now)
            in_flight_rows = await conn.execute(
                sa.select(deliveries.c.endpoint_id, sa.func.count())
                .where(deliveries.c.endpoint_id.in_(endpoint_ids), live_lease(now))
                .group_by(deliveries.c.endpoint_id)
            )
            in_flight = {e: int(n) for e, n in in_flight_rows}
            admission = admit(candidates, lanes_of(policies, states, in_flight), now, self._rng)
            if admission.deferred:
                await conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("b_id"))
                    .values(
                        next_attempt_at=sa.bindparam("b_at"),
                        status=sa.literal_column(UNLEASED_STATUS),
                        lease_until=None,
                    ),
                    [{"b_id": d, "b_at": at} for d, at in admission.deferred],
                )
            await self._save_lanes(
                conn, [lane_row(e, tenants[e], st, now) for e, st in admission.states.items()]
            )
            ids = admission.granted
            if not ids:
                return []
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.IN_FLIGHT.value,
                    next_attempt_at=lease_until,
                    lease_until=lease_until,
                    updated_at=now,
                )
            )
            rows = await conn.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.tenant_id,
                    deliveries.c.event_id,
                    deliveries.c.endpoint_id,
                    deliveries.c.attempt_count,
                    events.c.type,
                    events.c.data,
                    events.c.received_at,
                    endpoints.c.url,
                    endpoints.c.secret,
                    endpoints.c.timeout_seconds,
                    endpoints.c.retry_schedule,
                    events.c.trace_context,
                    events.c.key,
                    events.c.occurred_at,
                    endpoints.c.kind,
                    endpoints.c.kafka,
                    subscriptions.c.transform,
                    events.c.source_id,
                    events.c.headers,
                )
                .join(events, events.c.id == deliveries.c.event_id)
                .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
                .outerjoin(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .where(deliveries.c.id.in_(ids))
            )
            return [
                Claimed(
                    delivery_id=r.id,
                    tenant_id=r.tenant_id,
                    event_id=r.event_id,
                    endpoint_id=r.endpoint_id,
                    attempt_count=r.attempt_count,
                    lease_until=lease_until,
                    event_type=r.type,
                    event_data=bytes(r.data),
                    received_at=r.received_at,
                    url=r.url,
                    secret=r.secret,
                    timeout_seconds=r.timeout_seconds,
                    retry_schedule=tuple(r.retry_schedule),
                    trace_context=r.trace_context,
                    lane=policies[r.endpoint_id],
                    key=r.key,
                    occurred_at=r.occurred_at,
                    kind=EndpointKind(r.kind),
                    kafka=kafka_target(r.kafka),
                    transform=r.transform,
                    source_id=r.source_id,
                    headers=None if r.transform is None else dict(r.headers),
                )
                for r in rows
            ]

    async def settle(self, batch: Sequence[Settled], now: float | None = None) -> list[LaneNotice]:
        """Writes a batch of attempts and the deliveries' new states in one transaction."""
        if not batch:
            return []
        now = time.time() if now is None else now
        async with self.db.write() as conn:
            notices = await self._settle(conn, batch, now, held_only=False)
        return notices or []

    async def settle_held(self, settled: Settled, now: float) -> bool:
        async with self.db.write() as conn:
            return await self._settle(conn, [settled], now, held_only=True) is not None

    async def _settle(
        self, conn: AsyncConnection, batch: Sequence[Settled], now: float, *, held_only: bool
    ) -> list[LaneNotice] | None:
        """The settlement in the caller's transaction; None (nothing written) when
        ``held_only`` and the one delivery's lease no longer holds."""
        rows = settlement(batch, now)
        if not self.db.is_sqlite:
            _strip_nul(rows.attempts, ("error", "response_excerpt"))
            _strip_nul(rows.deliveries, ("last_error",))
        tenants = {s.claimed.endpoint_id: s.claimed.tenant_id for s in batch}
        # Only while our lease holds: a delivery retaken after a lapse is the new holder's.
        result = await conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id == sa.bindparam("b_id"),
                deliveries.c.status == DeliveryStatus.IN_FLIGHT.value,
                deliveries.c.lease_until == sa.bindparam("b_lease"),
            )
            .values(
                status=sa.bindparam("status"),
                attempt_count=sa.bindparam("attempt_count"),
                next_attempt_at=sa.bindparam("next_attempt_at"),
                lease_until=None,
                last_status_code=sa.bindparam("last_status_code"),
                last_error=sa.bindparam("last_error"),
                updated_at=sa.bindparam("updated_at"),
            ),
            rows.deliveries,
        )
        if held_only and result.rowcount != 1:
            return None
        await conn.execute(attempts.insert(), rows.attempts)
        lanes = settle_lanes(batch, await self._lock_states(conn, tenants, now), now, self._rng)
        await self._save_lanes(conn, lanes.rows)
        appended = list(lanes.events)
        notices = list(lanes.notices)
        for d in lanes.disabled:
            result = await conn.execute(
                endpoints.update()
                .where(
                    endpoints.c.id == d.endpoint_id,
                    endpoints.c.tenant_id == d.tenant_id,
                    endpoints.c.status != EndpointStatus.DISABLED.value,
                )
                .values(
                    status=EndpointStatus.DISABLED.value,
                    disabled_reason=d.reason,
                    updated_at=now,
                )
            )
            if result.rowcount:
                appended.append(d.event)
                notices.append(d.notice)
        if appended:
            await take_append_turn(conn)
            await conn.execute(events.insert(), [event_row(e) for e in appended])
        for r in lanes.released:
            await self._drain(conn, r, now)
        return notices

    async def _drain(self, conn: AsyncConnection, release: Release, now: float) -> None:
        """What waits for an endpoint whose breaker closed is due at a random time within its
        drain window (scheduled retries included: the endpoint is back)."""
        waiting = (
            deliveries.c.endpoint_id == release.endpoint_id,
            deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SCHEDULED.value]),
            deliveries.c.next_attempt_at > now,
        )
        backlog = (
            await conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(*waiting))
        ).scalar_one()
        if not backlog:
            return
        window = release.window(backlog)
        if self.db.is_sqlite:
            fraction = sa.func.random() / 18446744073709551616.0 + 0.5
            await conn.execute(
                deliveries.update().where(*waiting).values(next_attempt_at=now + fraction * window)
            )
            return
        # Not the rows a dispatcher is claiming right now (it holds them and waits for this
        # lane's row, which this transaction holds): that claim decides about those itself.
        free = sa.select(deliveries.c.id).where(*waiting).with_for_update(skip_locked=True)
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(free.scalar_subquery()))
            .values(next_attempt_at=now + sa.func.random() * window)
        )

    async def extend_lease(self, delivery_id: str, lease_until: float, extended: float) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.status == DeliveryStatus.IN_FLIGHT.value,
                    deliveries.c.lease_until == lease_until,
                )
                # the lease's end is when the delivery is due again (see the module's docstring)
                .values(lease_until=extended, next_attempt_at=extended)
            )
        return bool(result.rowcount == 1)

    async def release_all_leases(self, now: float) -> int:
        """At start-up of the only process on the database: what it held is due now, and so
        is what its lanes deferred, their pacing started afresh (storage/lanes.py)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                deliveries.update()
                .where(deliveries.c.status == DeliveryStatus.IN_FLIGHT.value)
                .values(
                    status=sa.literal_column(UNLEASED_STATUS),
                    next_attempt_at=now,
                    lease_until=None,
                    updated_at=now,
                )
            )
            await conn.execute(deliveries.update().where(deferred(now)).values(next_attempt_at=now))
            states = await conn.execute(
                sa.select(endpoint_lanes.c.endpoint_id, endpoint_lanes.c.state)
            )
            fresh = restarted_lanes([(r.endpoint_id, r.state) for r in states], now)
            if fresh:
                await conn.execute(
                    endpoint_lanes.update()
                    .where(endpoint_lanes.c.endpoint_id == sa.bindparam("b_id"))
                    .values(state=sa.bindparam("b_state"), updated_at=sa.bindparam("b_at")),
                    fresh,
                )
        return int(result.rowcount)

    async def next_due_at(self) -> float | None:
        query = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.id.in_(self._due(float("inf")).scalar_subquery())
        )
        async with self.db.read() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else float(value)

    # management --------------------------------------------------------------------------------

    async def get(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        query = deliveries.select().where(
            deliveries.c.id == delivery_id, deliveries.c.tenant_id == tenant_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else delivery_from_row(row)

    async def held(self, tenant_id: str, delivery_id: str) -> Held | None:
        """The tenant's delivery with its endpoint's settling policy, for an ack or a nack."""
        query = (
            sa.select(
                deliveries.c.id,
                deliveries.c.tenant_id,
                deliveries.c.event_id,
                deliveries.c.endpoint_id,
                deliveries.c.status,
                deliveries.c.attempt_count,
                deliveries.c.lease_until,
                deliveries.c.created_at,
                endpoints.c.kind,
                endpoints.c.secret,
                endpoints.c.retry_schedule,
                endpoints.c.concurrency,
                endpoints.c.rate_limit,
                endpoints.c.timeout_seconds,
                endpoints.c.disable_after_seconds,
                endpoints.c.breaker,
            )
            .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
            .where(deliveries.c.id == delivery_id, deliveries.c.tenant_id == tenant_id)
        )
        async with self.db.read() as conn:
            r = (await conn.execute(query)).first()
        if r is None:
            return None
        policy = policy_of(
            r.concurrency, r.rate_limit, r.timeout_seconds, r.disable_after_seconds, r.breaker
        )
        claimed = Claimed(
            delivery_id=r.id,
            tenant_id=r.tenant_id,
            event_id=r.event_id,
            endpoint_id=r.endpoint_id,
            attempt_count=r.attempt_count,
            lease_until=r.lease_until or 0.0,
            event_type="",  # settling needs neither the event nor a URL
            event_data=b"",
            received_at=r.created_at,
            url="",
            secret=r.secret,
            timeout_seconds=r.timeout_seconds,
            retry_schedule=tuple(r.retry_schedule),
            lane=policy,
        )
        return Held(EndpointKind(r.kind), r.status, r.lease_until, claimed)

    async def find(
        self, tenant_id: str, where: DeliveryFilter, page: Page
    ) -> tuple[list[Delivery], str | None]:
        query = deliveries.select().where(*delivery_conditions(tenant_id, where))
        return await fetch_page(self.db, query, deliveries.c.id, page, delivery_from_row)

    async def attempts(self, tenant_id: str, delivery_id: str) -> list[Attempt]:
        query = (
            attempts.select()
            .where(attempts.c.delivery_id == delivery_id, attempts.c.tenant_id == tenant_id)
            .order_by(attempts.c.number)
        )
        async with self.db.read() as conn:
            return [attempt_from_row(r) for r in await conn.execute(query)]

    async def retry(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        """Sends the delivery again now, whatever its state, unless it is in flight."""
        now = time.time()
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    deliveries.select().where(
                        deliveries.c.id == delivery_id, deliveries.c.tenant_id == tenant_id
                    )
                )
            ).first()
            if row is None:
                return None
            if row.status == DeliveryStatus.IN_FLIGHT.value:
                raise RetryRefused("the delivery is being sent right now")
            # Not in flight at the write either: on PostgreSQL a dispatcher may claim it between
            # the read above and this update (SQLite's single writer rules that out).
            result = await conn.execute(requeue(now, deliveries.c.id == delivery_id))
            if result.rowcount == 0:
                raise RetryRefused("the delivery is being sent right now")
        return await self.get(tenant_id, delivery_id)

    async def replay(
        self,
        tenant_id: str,
        event_id: str,
        event_seq: int,
        endpoint_ids: Sequence[str],
        key: str | None = None,
        routed_by: Mapping[str, str] | None = None,
    ) -> int:
        """Sends an event again to these endpoints: existing deliveries are redriven in place
        (same ``webhook-id``), missing ones created (with the event's ordering ``key``, and
        the subscription ``routed_by`` names for the endpoint, whose transformation applies).
        Returns how many were queued."""
        if not endpoint_ids:
            return 0  # a filter took every subscription out
        now = time.time()
        by = routed_by or {}
        async with self.db.write() as conn:
            fresh = [
                NewDelivery(new_id("delivery"), tenant_id, event_id, event_seq, e, key, by.get(e))
                for e in endpoint_ids
            ]
            await conn.execute(self._insert, await self._rows(conn, fresh, now))
            result = await conn.execute(
                requeue(
                    now,
                    deliveries.c.tenant_id == tenant_id,
                    deliveries.c.event_id == event_id,
                    deliveries.c.endpoint_id.in_(list(endpoint_ids)),
                )
            )
        return int(result.rowcount)

    # bulk jobs: inside the job's own transaction, so the items and its cursor move together ---

    async def redrive_dead(self, conn: AsyncConnection, ids: Sequence[str], now: float) -> int:
        """Dead deliveries back to pending, as ``retry`` does; returns how many were dead."""
        if not ids:
            return 0
        dead: sa.BindParameter[str] = sa.bindparam(
            "dead", DeliveryStatus.DEAD.value, literal_execute=True
        )
        result = await conn.execute(
            requeue(now, deliveries.c.id.in_(list(ids)), deliveries.c.status == dead)
        )
        return int(result.rowcount)

    async def replay_to(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        batch: Sequence[tuple[str, int, str | None]],
        endpoint_id: str,
        now: float,
    ) -> int:
        """``replay`` of many events (id, seq, ordering key) to one endpoint; returns how many
        were queued."""
        if not batch:
            return 0
        fresh = [
            NewDelivery(new_id("delivery"), tenant_id, event_id, seq, endpoint_id, key)
            for event_id, seq, key in batch
        ]
        await conn.execute(self._insert, await self._rows(conn, fresh, now))
        result = await conn.execute(
            requeue(
                now,
                deliveries.c.tenant_id == tenant_id,
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.event_id.in_([event_id for event_id, _, _ in batch]),
            )
        )
        return int(result.rowcount)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries by endpoint and status (for the demo display and health)."""
        query = sa.select(deliveries.c.endpoint_id, deliveries.c.status, sa.func.count()).group_by(
            deliveries.c.endpoint_id, deliveries.c.status
        )
        out: dict[str, dict[str, int]] = {}
        async with self.db.read() as conn:
            for endpoint_id, status, n in await conn.execute(query):
                out.setdefault(endpoint_id, {})[status] = int(n)
        return out

    async def attempt_counts(self) -> dict[str, dict[str, int]]:
        query = (
            sa.select(deliveries.c.endpoint_id, attempts.c.outcome, sa.func.count())
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .group_by(deliveries.c.endpoint_id, attempts.c.outcome)
        )
        out: dict[str, dict[str, int]] = {}
        async with self.db.read() as conn:
            for endpoint_id, outcome, n in await conn.execute(query):
                out.setdefault(endpoint_id, {})[outcome] = int(n)
        return out
