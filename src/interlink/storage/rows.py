"""Row values of the hot path, built once for every adapter."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import msgspec

from interlink.domain.delivery import DeliveryStatus
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.storage.ports import ERROR_CHARS, NewDelivery, Settled


def event_row(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant_id": e.tenant_id,
        "source_id": e.source_id,
        "idempotency_key": e.idempotency_key,
        "type": e.type,
        "key": e.key,
        "received_at": e.received_at,
        "occurred_at": e.occurred_at,
        "data": e.data,
        "raw": e.raw,
        "headers": e.headers,
        "trace_context": e.trace_context,
        "origin": e.origin,
        "derived_from": e.derived_from,
        "schema_version": e.schema_version,
    }


def delivery_rows(
    batch: Sequence[NewDelivery], now: float, pull: Collection[str] = ()
) -> list[dict[str, Any]]:
    """New deliveries' rows; ``pull``: which of their endpoints are pull endpoints."""
    return [
        {
            "id": d.id,
            "tenant_id": d.tenant_id,
            "event_id": d.event_id,
            "event_seq": d.event_seq,
            "endpoint_id": d.endpoint_id,
            "key": d.key,
            "subscription_id": d.subscription_id,
            # "push": the dispatcher sends it (push and Kafka endpoints); "pull": a consumer claims.
            "endpoint_kind": "pull" if d.endpoint_id in pull else "push",
            "status": DeliveryStatus.PENDING.value,
            "attempt_count": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for d in batch
    ]


class Settlement(msgspec.Struct, frozen=True):
    attempts: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]  # keys b_id, b_lease: the delivery and the lease it held


def settlement(batch: Sequence[Settled], now: float) -> Settlement:
    attempts: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for s in batch:
        c, r, d = s.claimed, s.result, s.decision
        error = r.error[:ERROR_CHARS] if r.error else None
        attempts.append(
            {
                "id": new_id("attempt"),
                "tenant_id": c.tenant_id,
                "delivery_id": c.delivery_id,
                "number": d.attempt_count,
                "started_at": s.started_at,
                "latency_ms": r.latency_ms,
                "outcome": r.outcome.value,
                "status_code": r.status_code,
                "error": error,
                "response_excerpt": r.response_excerpt,
            }
        )
        deliveries.append(
            {
                "b_id": c.delivery_id,
                "b_lease": c.lease_until,
                "status": d.status.value,
                "attempt_count": d.attempt_count,
                "next_attempt_at": (
                    now + d.next_attempt_in if d.next_attempt_in is not None else None
                ),
                "last_status_code": r.status_code,
                "last_error": error,
                "updated_at": now,
            }
        )
    return Settlement(attempts, deliveries)
