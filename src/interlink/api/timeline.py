"""``GET /api/v1/events/{id}/timeline``: every step of one event, in time order."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.exceptions import NotFoundException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.schemas import iso
from interlink.storage import timeline as store


class ReceivedOut(msgspec.Struct, tag="received", tag_field="step"):
    at: str | None
    source_id: str
    source_name: str | None
    verifier: str | None
    signature_headers: str | None
    type: str
    idempotency_key: str
    trace_id: str | None
    derived_from: str | None
    origin: str  # partner, normalized, reconciliation, or api (published by the tenant)


class NormalizedOut(msgspec.Struct, tag="normalized", tag_field="step"):
    at: str | None
    event_id: str
    type: str
    key: str | None


class QuarantinedOut(msgspec.Struct, tag="quarantined", tag_field="step"):
    at: str | None
    entry_id: str
    stage: str
    reason: str
    resolved_at: str | None
    resolution: str | None


class RoutedOut(msgspec.Struct, tag="routed", tag_field="step"):
    at: str | None
    delivery_id: str
    endpoint_id: str
    endpoint_url: str | None


class AttemptStepOut(msgspec.Struct, tag="attempt", tag_field="step"):
    at: str | None
    delivery_id: str
    endpoint_id: str
    number: int
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None


class DeliveryStateOut(msgspec.Struct, tag="delivery_state", tag_field="step"):
    at: str | None
    delivery_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    next_attempt_at: str | None


StepOut = (
    ReceivedOut | NormalizedOut | QuarantinedOut | RoutedOut | AttemptStepOut | DeliveryStateOut
)


class TimelineOut(msgspec.Struct):
    event_id: str
    steps: list[StepOut]


def _step_out(step: store.Step) -> StepOut:
    if isinstance(step, store.Received):
        return ReceivedOut(
            at=iso(step.at),
            source_id=step.source_id,
            source_name=step.source_name,
            verifier=step.verifier,
            signature_headers=step.signature_headers,
            type=step.type,
            idempotency_key=step.idempotency_key,
            trace_id=step.trace_id,
            derived_from=step.derived_from,
            origin=step.origin,
        )
    if isinstance(step, store.NormalizedStep):
        return NormalizedOut(iso(step.at), step.event_id, step.type, step.key)
    if isinstance(step, store.QuarantinedStep):
        return QuarantinedOut(
            iso(step.at),
            step.entry_id,
            step.stage,
            step.reason,
            iso(step.resolved_at),
            step.resolution,
        )
    if isinstance(step, store.Routed):
        return RoutedOut(iso(step.at), step.delivery_id, step.endpoint_id, step.endpoint_url)
    if isinstance(step, store.AttemptStep):
        return AttemptStepOut(
            at=iso(step.at),
            delivery_id=step.delivery_id,
            endpoint_id=step.endpoint_id,
            number=step.number,
            outcome=step.outcome,
            status_code=step.status_code,
            latency_ms=step.latency_ms,
            error=step.error,
        )
    return DeliveryStateOut(
        at=iso(step.at),
        delivery_id=step.delivery_id,
        endpoint_id=step.endpoint_id,
        status=step.status,
        attempt_count=step.attempt_count,
        next_attempt_at=iso(step.next_attempt_at),
    )


class EventTimelineController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get(
        "/{event_id:str}/timeline",
        summary="Every step of an event in time order: received, routed, attempts, final state",
    )
    async def timeline(self, event_id: str, principal: Principal, ctx: ApiContext) -> TimelineOut:
        found = await store.read_timeline(ctx.events.db, require_tenant(principal), event_id)
        if found is None:
            raise NotFoundException(f"no event '{event_id}'")
        return TimelineOut(found.event_id, [_step_out(s) for s in found.steps])
