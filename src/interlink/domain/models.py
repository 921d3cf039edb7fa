"""The entities of the domain language, as immutable records."""

from __future__ import annotations

import enum

import msgspec

from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.endpoint_health import HealthPolicy
from interlink.domain.kafka import KafkaTarget
from interlink.domain.lanes import DEFAULT_CONCURRENCY, LanePolicy
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.rate_limit import RateLimit
from interlink.domain.retry import RetryPolicy


class Tenant(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: float


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a source's payloads keep the partner's event id, type, ordering key and data.

    ``id_from`` is ``header:<name>`` or ``json:<dotted.path>``; when the partner sends no id, the
    idempotency key falls back to a hash of the body.
    """

    id_from: str = "header:webhook-id"
    type_path: str = "type"
    key_path: str | None = None
    data_path: str | None = "data"
    default_type: str | None = None


class SigningSecret(msgspec.Struct, frozen=True):
    """One of a source's secrets (or, for Ed25519, public keys), or of an endpoint's signing
    secrets; from ``expires_at`` (epoch seconds) on it verifies (or signs) nothing, which is how
    a rotated-out secret is retired."""

    value: str
    expires_at: float | None = None

    def live(self, now: float) -> bool:
        # Written so that a NaN clock fails closed: every comparison with NaN is false.
        return self.expires_at is None or now < self.expires_at


class Source(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    name: str
    verifier: str  # a name in interlink.ingress.verifiers.SCHEMES
    verifier_config: dict[str, object]
    secrets: tuple[SigningSecret, ...]
    envelope: Envelope
    max_body_bytes: int
    tolerance_seconds: int
    created_at: float
    kit: str | None = None  # the partner kit that normalizes this source's events


class EndpointStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class EndpointKind(enum.StrEnum):
    PUSH = "push"  # the dispatcher POSTs each delivery to the endpoint's URL
    PULL = "pull"  # no URL: consumers claim deliveries through the API (domain/pull.py)
    KAFKA = "kafka"  # the dispatcher produces each delivery to a topic (domain/kafka.py)


class Endpoint(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    url: str
    description: str
    # What signs its deliveries: ``whsec_`` secrets (v1) or ``whsk_`` Ed25519 keys (v1a); the
    # newest last. A rotated-out one has an expiry: every live one signs, so a receiver still
    # holding it verifies until then (domain/signing_keys.py).
    secrets: tuple[SigningSecret, ...]
    status: EndpointStatus
    disabled_reason: str | None
    retry: RetryPolicy
    timeout_seconds: float
    created_at: float
    ordering: Ordering = Ordering.UNORDERED
    on_head_dead: OnHeadDead = OnHeadDead.WAIT
    concurrency: int = DEFAULT_CONCURRENCY
    rate_limit: RateLimit | None = None
    disable_after_seconds: float | None = None  # none: HealthPolicy's default
    breaker: BreakerPolicy | None = None  # none: BreakerPolicy's defaults
    kind: EndpointKind = EndpointKind.PUSH
    kafka: KafkaTarget | None = None  # where a Kafka endpoint writes (kind kafka only)


def lane_policy(
    concurrency: int,
    rate_limit: RateLimit | None,
    timeout_seconds: float,
    disable_after_seconds: float | None,
    breaker: BreakerPolicy | None,
) -> LanePolicy:
    """An endpoint's sending policy, from its configuration."""
    health = HealthPolicy(disable_after_seconds) if disable_after_seconds else HealthPolicy()
    return LanePolicy(concurrency, rate_limit, timeout_seconds, breaker or BreakerPolicy(), health)


class Subscription(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    endpoint_id: str
    event_types: tuple[str, ...]
    created_at: float
    filter: str | None = None  # CEL as written (domain/filters.py); none: every event matches
    transform: str | None = None  # JSONata (domain/transforms.py); none: the event as stored


class Segment(msgspec.Struct, frozen=True):
    """A tenant's named CEL predicate, which its filters use as ``segment("name")``."""

    id: str
    tenant_id: str
    name: str
    expression: str
    description: str
    created_at: float
    updated_at: float


class Event(msgspec.Struct, frozen=True):
    """An immutable fact received from a partner; ``seq`` is its position in the log."""

    id: str
    tenant_id: str
    source_id: str
    idempotency_key: str
    type: str
    key: str | None
    received_at: float
    occurred_at: float | None
    data: bytes  # JSON of the event's data, as delivered
    raw: bytes  # the body as received, kept for audit and replay
    headers: dict[str, str]
    seq: int = 0
    trace_context: str | None = None  # W3C traceparent of the request that brought it
    # "partner" as received; "normalized": made by a partner kit from ``derived_from``;
    # "reconciliation": made by the reconciliation run ``derived_from``
    origin: str = "partner"
    derived_from: str | None = None
    schema_version: int | None = None  # of its type in the event catalog, when normalized
