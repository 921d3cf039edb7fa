"""One event's story, step by step: received, routed to each endpoint, every attempt, and where
each delivery stands now. Read-only; every query is tenant-scoped and uses an index:

- the event by its unique id (and tenant),
- its deliveries by ``uq_deliveries_event_endpoint`` (event_id first),
- their attempts by ``ix_attempts_delivery`` (delivery_id, number),
- the source and endpoints by primary key,
- the canonical events made from a partner's event by ``uq_events_source_idempotency`` (their
  keys are ``<event id>#<index>`` on the same source), its quarantine entries by
  ``ix_quarantine_event``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.storage.database import Database
from interlink.storage.tables import (
    attempts,
    deliveries,
    endpoints,
    events,
    idempotency_keys,
    quarantine,
    sources,
)


class Received(msgspec.Struct, frozen=True, tag="received", tag_field="step"):
    at: float
    source_id: str
    source_name: str | None  # None: the source has been deleted for good (never, today)
    verifier: str | None  # the source's scheme, which verified this event
    signature_headers: str | None  # the header family it came with: webhook-*, svix-*, ...
    type: str
    idempotency_key: str
    trace_id: str | None  # the OpenTelemetry trace of this event, when tracing was on
    derived_from: str | None = None  # a canonical event: the partner's event it was made from
    origin: str = "partner"  # partner, normalized, reconciliation, or api (published)


class NormalizedStep(msgspec.Struct, frozen=True, tag="normalized", tag_field="step"):
    """A canonical event the source's partner kit made of this one (which is not routed)."""

    at: float
    event_id: str
    type: str
    key: str | None


class QuarantinedStep(msgspec.Struct, frozen=True, tag="quarantined", tag_field="step"):
    at: float
    entry_id: str
    stage: str
    reason: str
    resolved_at: float | None
    resolution: str | None


class Routed(msgspec.Struct, frozen=True, tag="routed", tag_field="step"):
    at: float
    delivery_id: str
    endpoint_id: str
    endpoint_url: str | None


class AttemptStep(msgspec.Struct, frozen=True, tag="attempt", tag_field="step"):
    at: float
    delivery_id: str
    endpoint_id: str
    number: int
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None = None  # the start of the receiver's answer (the console)


class DeliveryState(msgspec.Struct, frozen=True, tag="delivery_state", tag_field="step"):
    """Where the delivery stands now (its latest change)."""

    at: float
    delivery_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    next_attempt_at: float | None  # when scheduled or pending: the next try


Step = Received | NormalizedStep | QuarantinedStep | Routed | AttemptStep | DeliveryState

# Steps at the same instant keep the pipeline's order.
_ORDER = {
    Received: 0,
    NormalizedStep: 1,
    QuarantinedStep: 1,
    Routed: 1,
    AttemptStep: 2,
    DeliveryState: 3,
}


class Timeline(msgspec.Struct, frozen=True):
    event_id: str
    steps: list[Step]


def _family(headers: dict[str, Any]) -> str | None:
    """Which signature header family the event came with (the header names, not the values)."""
    for prefix in ("webhook-", "svix-"):
        if f"{prefix}signature" in headers:
            return f"{prefix}*"
    named = sorted(h for h in headers if "signature" in h)
    return ", ".join(named) if named else None


def _trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<trace id>-<span id>-<flags>``)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _made_from(conn: AsyncConnection, source_id: str, event_id: str) -> sa.Select[Any]:
    """The ids of the canonical events made from a partner's event: their idempotency keys are
    ``<event id>#<index>``, a range of the dedupe index (on PostgreSQL in ``idempotency_keys``,
    since the partitioned events have none)."""
    on_sqlite = conn.dialect.name == "sqlite"
    keyed = events if on_sqlite else idempotency_keys
    ids = events.c.id if on_sqlite else idempotency_keys.c.event_id
    return sa.select(ids).where(
        keyed.c.source_id == source_id,
        keyed.c.idempotency_key > f"{event_id}#",
        keyed.c.idempotency_key < f"{event_id}$",  # '$' follows '#'
    )


async def read_timeline(db: Database, tenant_id: str, event_id: str) -> Timeline | None:
    """The event's steps in time order, or None if the tenant has no such event."""
    async with db.read() as conn:
        event = (
            await conn.execute(
                sa.select(
                    events.c.id,
                    events.c.source_id,
                    events.c.type,
                    events.c.idempotency_key,
                    events.c.received_at,
                    events.c.headers,
                    events.c.trace_context,
                    events.c.derived_from,
                    events.c.origin,
                ).where(events.c.id == event_id, events.c.tenant_id == tenant_id)
            )
        ).first()
        if event is None:
            return None
        source = (
            await conn.execute(
                sa.select(sources.c.name, sources.c.verifier).where(
                    sources.c.id == event.source_id, sources.c.tenant_id == tenant_id
                )
            )
        ).first()
        delivery_rows = (
            await conn.execute(
                sa.select(deliveries, endpoints.c.url)
                .outerjoin(
                    endpoints,
                    sa.and_(
                        endpoints.c.id == deliveries.c.endpoint_id,
                        endpoints.c.tenant_id == tenant_id,
                    ),
                )
                .where(deliveries.c.event_id == event_id, deliveries.c.tenant_id == tenant_id)
            )
        ).all()
        attempt_rows = (
            (
                await conn.execute(
                    sa.select(attempts)
                    .where(
                        attempts.c.delivery_id.in_([d.id for d in delivery_rows]),
                        attempts.c.tenant_id == tenant_id,
                    )
                    .order_by(attempts.c.delivery_id, attempts.c.number)
                )
            ).all()
            if delivery_rows
            else []
        )
        made: Sequence[Any] = ()
        if event.derived_from is None and event.origin == "partner":
            made = (
                await conn.execute(
                    sa.select(events.c.id, events.c.type, events.c.key, events.c.received_at)
                    .where(
                        events.c.id.in_(_made_from(conn, event.source_id, event_id)),
                        events.c.derived_from == event_id,
                        events.c.tenant_id == tenant_id,
                    )
                    .order_by(events.c.seq)
                )
            ).all()
        kept = (
            await conn.execute(
                quarantine.select().where(
                    quarantine.c.event_id == event_id, quarantine.c.tenant_id == tenant_id
                )
            )
        ).all()
    headers = event.headers if isinstance(event.headers, dict) else {}
    steps: list[Step] = [
        Received(
            at=event.received_at,
            source_id=event.source_id,
            source_name=None if source is None else source.name,
            verifier=None if source is None else source.verifier,
            signature_headers=_family(headers),
            type=event.type,
            idempotency_key=event.idempotency_key,
            trace_id=_trace_id(event.trace_context),
            derived_from=event.derived_from,
            origin=event.origin,
        )
    ]
    steps.extend(NormalizedStep(m.received_at, m.id, m.type, m.key) for m in made)
    steps.extend(
        QuarantinedStep(q.created_at, q.id, q.stage, q.reason, q.resolved_at, q.resolution)
        for q in kept
    )
    endpoint_of = {d.id: d.endpoint_id for d in delivery_rows}
    for d in delivery_rows:
        steps.append(Routed(d.created_at, d.id, d.endpoint_id, d.url))
    last_attempt: dict[str, float] = {}
    for a in attempt_rows:
        steps.append(
            AttemptStep(
                at=a.started_at,
                delivery_id=a.delivery_id,
                endpoint_id=endpoint_of[a.delivery_id],
                number=a.number,
                outcome=a.outcome,
                status_code=a.status_code,
                latency_ms=round(a.latency_ms, 3),
                error=a.error,
                response_excerpt=a.response_excerpt,
            )
        )
        last_attempt[a.delivery_id] = a.started_at + a.latency_ms / 1000.0
    for d in delivery_rows:
        live = d.status in ("pending", "scheduled")
        steps.append(
            DeliveryState(
                # Never before the attempt it follows, whatever the clocks said.
                at=max(d.updated_at, last_attempt.get(d.id, d.updated_at)),
                delivery_id=d.id,
                endpoint_id=d.endpoint_id,
                status=d.status,
                attempt_count=d.attempt_count,
                next_attempt_at=d.next_attempt_at if live else None,
            )
        )
    steps.sort(key=lambda s: (s.at, _ORDER[type(s)]))
    return Timeline(event_id=event.id, steps=steps)
