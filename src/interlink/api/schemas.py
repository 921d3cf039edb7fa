"""Request and response bodies. Views never carry secrets; creation answers carry them once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from interlink.domain.models import Endpoint, Envelope, Source, Subscription, Tenant
from interlink.storage.deliveries import Attempt, Delivery

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=60)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Listing(msgspec.Struct):
    data: list[Any]
    next_cursor: str | None


# tenants -----------------------------------------------------------------------------------------


class TenantIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class TenantOut(msgspec.Struct):
    id: str
    name: str
    created_at: str | None

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(t.id, t.name, iso(t.created_at))


class TenantCreated(msgspec.Struct):
    tenant: TenantOut
    api_key: str


class ApiKeyCreated(msgspec.Struct):
    api_key: str


# sources -----------------------------------------------------------------------------------------


class SourceIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    verifier: str = "standard_webhooks"
    verifier_config: dict[str, Any] = msgspec.field(default_factory=dict)
    secrets: list[str] = msgspec.field(default_factory=list)
    envelope: Envelope | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1, le=10 * 1024 * 1024)] | None = None
    tolerance_seconds: Annotated[int, msgspec.Meta(ge=1, le=24 * 3600)] | None = None


class SourceOut(msgspec.Struct):
    id: str
    name: str
    verifier: str
    verifier_config: dict[str, Any]
    envelope: Envelope
    max_body_bytes: int
    tolerance_seconds: int
    ingest_url: str
    secret_count: int
    created_at: str | None

    @classmethod
    def of(cls, s: Source, base_url: str) -> SourceOut:
        return cls(
            id=s.id,
            name=s.name,
            verifier=s.verifier,
            verifier_config=s.verifier_config,
            envelope=s.envelope,
            max_body_bytes=s.max_body_bytes,
            tolerance_seconds=s.tolerance_seconds,
            ingest_url=f"{base_url}/in/{s.id}",
            secret_count=len(s.secrets),
            created_at=iso(s.created_at),
        )


class SourceCreated(msgspec.Struct):
    source: SourceOut
    secrets: list[str]


# endpoints ---------------------------------------------------------------------------------------


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    secret: str | None = None
    retry_schedule: Annotated[list[Delay], msgspec.Meta(min_length=1, max_length=30)] | None = None
    timeout_seconds: Timeout | None = None
    status: str = "active"


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    retry_schedule: Annotated[list[Delay], msgspec.Meta(min_length=1, max_length=30)] | None = None
    timeout_seconds: Timeout | None = None
    status: str | None = None


class EndpointOut(msgspec.Struct):
    id: str
    url: str
    description: str
    status: str
    disabled_reason: str | None
    retry_schedule: list[float]
    timeout_seconds: float
    created_at: str | None

    @classmethod
    def of(cls, e: Endpoint) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            status=e.status.value,
            disabled_reason=e.disabled_reason,
            retry_schedule=list(e.retry.schedule),
            timeout_seconds=e.timeout_seconds,
            created_at=iso(e.created_at),
        )


class EndpointCreated(msgspec.Struct):
    endpoint: EndpointOut
    secret: str


# subscriptions -----------------------------------------------------------------------------------


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    endpoint_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    event_types: Annotated[list[Pattern], msgspec.Meta(min_length=1, max_length=100)]


class SubscriptionOut(msgspec.Struct):
    id: str
    endpoint_id: str
    event_types: list[str]
    created_at: str | None

    @classmethod
    def of(cls, s: Subscription) -> SubscriptionOut:
        return cls(s.id, s.endpoint_id, list(s.event_types), iso(s.created_at))


# events and deliveries ---------------------------------------------------------------------------


class EventOut(msgspec.Struct):
    id: str
    source_id: str
    type: str
    key: str | None
    idempotency_key: str
    received_at: str | None
    occurred_at: str | None
    data: msgspec.Raw
    headers: dict[str, str]


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    endpoint_id: str | None = None


class ReplayOut(msgspec.Struct):
    event_id: str
    queued: int


class DeliveryOut(msgspec.Struct):
    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event_id=d.event_id,
            endpoint_id=d.endpoint_id,
            status=d.status,
            attempt_count=d.attempt_count,
            next_attempt_at=iso(d.next_attempt_at),
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=iso(d.created_at),
            updated_at=iso(d.updated_at),
        )


class AttemptOut(msgspec.Struct):
    id: str
    number: int
    started_at: str | None
    latency_ms: float
    outcome: str
    status_code: int | None
    error: str | None
    response_excerpt: str | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            id=a.id,
            number=a.number,
            started_at=iso(a.started_at),
            latency_ms=round(a.latency_ms, 3),
            outcome=a.outcome,
            status_code=a.status_code,
            error=a.error,
            response_excerpt=a.response_excerpt,
        )
