"""Request and response bodies. Views never carry secrets; creation answers carry them once."""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from interlink.api.params import INSTANT_SCHEMA, MAX_EPOCH
from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.jobs import MAX_EVENT_IDS, Job, ReplayFilter, eta_seconds
from interlink.domain.kafka import CLUSTER_PATTERN, TOPIC_PATTERN, KafkaTarget
from interlink.domain.lanes import DEFAULT_CONCURRENCY, LaneState
from interlink.domain.models import (
    Endpoint,
    EndpointKind,
    EndpointStatus,
    Envelope,
    Source,
    Subscription,
    Tenant,
)
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.rate_limit import RateLimit
from interlink.domain.secret_rotation import DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS
from interlink.domain.token_refresh import ConnectionFlow
from interlink.ingress.verifiers import standard_webhooks
from interlink.storage.connections import Connection
from interlink.storage.deliveries import Attempt, Delivery

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=60)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=1000)]
DisableAfter = Annotated[float, msgspec.Meta(ge=60, le=365 * 24 * 3600)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
JobRate = Annotated[float, msgspec.Meta(ge=1, le=1_000_000)]  # items per second
# ISO 8601 with a time zone (``2026-01-01T00:00:00Z``), or epoch seconds up to the year 9999.
Instant = (
    Annotated[str, msgspec.Meta(min_length=1, max_length=40, extra_json_schema=INSTANT_SCHEMA)]
    | Annotated[float, msgspec.Meta(ge=0, le=MAX_EPOCH)]
)
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def iso(ts: float | None) -> str | None:
    """A stored time as ISO 8601; one outside what a datetime holds (stored before times were
    bounded) shows as the first or last time there is, so reading it never fails."""
    if ts is None or math.isnan(ts):
        return None
    try:
        at = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        at = _FIRST if ts < 0 else _LAST
    return at.isoformat().replace("+00:00", "Z")


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


# sources -----------------------------------------------------------------------------------------


KitName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SourceIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    # Unset: the kit's scheme when a kit is named, standard_webhooks otherwise.
    verifier: str | None = None
    verifier_config: dict[str, Any] = msgspec.field(default_factory=dict)
    secrets: list[str] = msgspec.field(default_factory=list)
    envelope: Envelope | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1, le=10 * 1024 * 1024)] | None = None
    tolerance_seconds: Annotated[int, msgspec.Meta(ge=1, le=24 * 3600)] | None = None
    kit: KitName | None = None  # a partner kit normalizes the source's events


class SourcePatch(msgspec.Struct, forbid_unknown_fields=True):
    kit: KitName | None  # null: the source's events are routed as received


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
    # When each held secret stops verifying (null: never), in the order they were added; the
    # secrets themselves are never shown again after they were created.
    secret_expires_at: list[str | None]
    created_at: str | None
    kit: str | None

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
            secret_expires_at=[iso(secret.expires_at) for secret in s.secrets],
            created_at=iso(s.created_at),
            kit=s.kit,
        )


class SourceCreated(msgspec.Struct):
    source: SourceOut
    secrets: list[str]


class SecretIn(msgspec.Struct, forbid_unknown_fields=True):
    """A rotation: the new secret (generated where the scheme allows, if absent) and, optionally,
    how long the secrets held so far keep verifying."""

    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    expire_current_in_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 24 * 3600)] | None = None


class SecretAdded(msgspec.Struct):
    source: SourceOut
    secret: str


# endpoints ---------------------------------------------------------------------------------------


class SigningScheme(enum.StrEnum):
    """How deliveries are signed: ``v1`` HMAC-SHA256 with a shared ``whsec_`` secret, or ``v1a``
    Ed25519, verified with the endpoint's public key (``whpk_``); its private key is never
    shown (Standard Webhooks)."""

    V1 = "v1"
    V1A = "v1a"


class KafkaTargetIn(msgspec.Struct, forbid_unknown_fields=True):
    """Where a Kafka endpoint produces: a cluster the operator granted this tenant (by name; a
    tenant never gives a broker address), a topic (within the grant's prefix, if it has one)
    and the record key's template (default: the event's ordering key)."""

    cluster: Annotated[str, msgspec.Meta(pattern=CLUSTER_PATTERN)]
    topic: Annotated[str, msgspec.Meta(pattern=TOPIC_PATTERN)]
    key: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=256,
                description="Text with {key}, {type}, {event_id}, {tenant} or {endpoint}; "
                "{{ and }} for braces.",
            ),
        ]
        | None
    ) = None

    def target(self) -> KafkaTarget:
        return KafkaTarget(self.cluster, self.topic, self.key)


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    # push: deliveries are POSTed to url (required); pull: consumers claim them (no url);
    # kafka: each delivery is produced to the topic in kafka (required; no url)
    kind: EndpointKind = EndpointKind.PUSH
    url: Url | None = None
    kafka: KafkaTargetIn | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    secret: str | None = None  # v1 only; generated when absent
    signing: SigningScheme = SigningScheme.V1
    retry_schedule: Annotated[list[Delay], msgspec.Meta(min_length=1, max_length=30)] | None = None
    timeout_seconds: Timeout | None = None
    status: EndpointStatus = EndpointStatus.ACTIVE
    # ordered: events of one key are delivered one at a time, in log order
    ordering: Ordering = Ordering.UNORDERED
    # what an ordered key does when its head is dead: wait for an operator, or skip it
    on_head_dead: OnHeadDead = OnHeadDead.WAIT
    concurrency: Concurrency = DEFAULT_CONCURRENCY  # attempts in flight at once, all processes
    rate_limit: RateLimit | None = None  # {"rate": 10, "per": "second", "burst": 20}
    disable_after_seconds: DisableAfter | None = None  # failing this long disables it (5 days)
    breaker: BreakerPolicy | None = None  # the circuit breaker's thresholds; none: the defaults


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | None = None
    kafka: KafkaTargetIn | None = None  # a Kafka endpoint's new target (checked like a new one)
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    retry_schedule: Annotated[list[Delay], msgspec.Meta(min_length=1, max_length=30)] | None = None
    timeout_seconds: Timeout | None = None
    status: EndpointStatus | None = None
    ordering: Ordering | None = None
    on_head_dead: OnHeadDead | None = None
    concurrency: Concurrency | None = None
    # null removes the rate limit; leaving it out keeps it
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    disable_after_seconds: DisableAfter | None = None
    breaker: BreakerPolicy | msgspec.UnsetType | None = msgspec.UNSET  # null: the defaults


class EndpointOut(msgspec.Struct):
    id: str
    kind: str  # push, pull or kafka
    url: str | None  # none for a pull or Kafka endpoint
    kafka: KafkaTarget | None  # a Kafka endpoint's cluster, topic and key template
    description: str
    status: str
    disabled_reason: str | None
    retry_schedule: list[float]
    timeout_seconds: float
    created_at: str | None
    ordering: str
    on_head_dead: str
    concurrency: int
    rate_limit: RateLimit | None
    disable_after_seconds: float | None
    breaker: BreakerPolicy | None
    signing: str  # the scheme of its current secret: v1 or v1a
    # When each signing secret stops signing (null: never), oldest first; during a rotation's
    # overlap every live one signs each delivery.
    secret_expires_at: list[str | None]
    # The Ed25519 public keys (whpk_) of its live v1a keys, readable at any time.
    public_keys: list[str]
    warnings: Annotated[
        list[str],
        msgspec.Meta(
            description="What deliveries to this URL will meet under the outbound policy "
            "(e.g. it resolves to a loopback address that INTERLINK_OUTBOUND_ALLOW_NETWORKS "
            "does not admit). Filled when the endpoint is created or its url changed; "
            "empty on reads."
        ),
    ] = msgspec.field(default_factory=list)

    @classmethod
    def of(cls, e: Endpoint, warnings: list[str] | None = None) -> EndpointOut:
        return cls(
            id=e.id,
            kind=e.kind.value,
            url=e.url or None,
            kafka=e.kafka,
            description=e.description,
            status=e.status.value,
            disabled_reason=e.disabled_reason,
            retry_schedule=list(e.retry.schedule),
            timeout_seconds=e.timeout_seconds,
            created_at=iso(e.created_at),
            ordering=e.ordering.value,
            on_head_dead=e.on_head_dead.value,
            concurrency=e.concurrency,
            rate_limit=e.rate_limit,
            disable_after_seconds=e.disable_after_seconds,
            breaker=e.breaker,
            signing=scheme_of(e.secrets[-1].value),
            secret_expires_at=[iso(secret.expires_at) for secret in e.secrets],
            public_keys=[
                standard_webhooks.public_key_of(s.value)
                for s in e.secrets
                if scheme_of(s.value) is SigningScheme.V1A
            ],
            warnings=warnings or [],
        )


def scheme_of(secret: str) -> SigningScheme:
    return (
        SigningScheme.V1A
        if secret.startswith(standard_webhooks.SECRET_KEY_PREFIX)
        else SigningScheme.V1
    )


class EndpointHealthOut(msgspec.Struct):
    """The endpoint's lane as the dispatchers share it: breaker, failing streak, latency, and
    what holds it: slots taken by live leases, deliveries deferred, pacing horizon, full since."""

    endpoint_id: str
    status: str
    breaker: str  # closed, open, half_open
    breaker_opened_at: str | None
    breaker_retry_at: str | None  # when an open breaker lets a probe through
    failing_since: str | None  # first failure with no success since
    latency_ms: float | None  # moving average of attempt latency
    concurrency: int  # the lane's slots
    slots_in_use: int  # attempts under way now: live leases, in every process
    deferred: int  # deliveries the lane put off to a later time (retries' backoff not counted)
    horizon: str | None  # the latest time it paced a delivery to, while that is ahead
    full_since: str | None  # since when every slot has been taken at each of its admissions

    @classmethod
    def of(
        cls, e: Endpoint, lane: LaneState, load: tuple[int, int], now: float
    ) -> EndpointHealthOut:
        b = lane.breaker
        slots_in_use, deferred = load
        return cls(
            endpoint_id=e.id,
            status=e.status.value,
            breaker=b.state.value,
            breaker_opened_at=iso(b.opened_at) if b.state.value != "closed" else None,
            breaker_retry_at=iso(b.retry_at) if b.state.value == "open" else None,
            failing_since=iso(lane.failing_since),
            latency_ms=None if lane.latency is None else round(lane.latency * 1000, 3),
            concurrency=e.concurrency,
            slots_in_use=slots_in_use,
            deferred=deferred,
            horizon=iso(lane.horizon) if lane.horizon > now else None,
            full_since=iso(lane.full_since),
        )


class EndpointCreated(msgspec.Struct):
    endpoint: EndpointOut
    secret: str | None  # v1: the shared secret, shown this once; v1a: null
    public_key: str | None = None  # v1a: the key receivers verify with


class EndpointSecretRotate(msgspec.Struct, forbid_unknown_fields=True):
    """A rotation: a new secret (v1) or key pair (v1a) signs from now on; the current ones keep
    signing beside it for ``overlap_seconds``, so receivers can switch over in that time."""

    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP_SECONDS)] = (
        DEFAULT_OVERLAP_SECONDS
    )
    signing: SigningScheme | None = None  # none: the current scheme
    secret: str | None = None  # v1 only: the new whsec_ secret; generated when absent


# subscriptions -----------------------------------------------------------------------------------


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    endpoint_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    event_types: Annotated[list[Pattern], msgspec.Meta(min_length=1, max_length=100)]
    # CEL and JSONata (api/filter_schemas.py holds their documented types and rules)
    filter: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    transform: Annotated[str, msgspec.Meta(max_length=16384)] | None = None


class SubscriptionOut(msgspec.Struct):
    id: str
    endpoint_id: str
    event_types: list[str]
    created_at: str | None
    filter: str | None = None
    transform: str | None = None

    @classmethod
    def of(cls, s: Subscription) -> SubscriptionOut:
        return cls(
            s.id, s.endpoint_id, list(s.event_types), iso(s.created_at), s.filter, s.transform
        )


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
    # "partner" (as received), "normalized" (by the source's partner kit) or "reconciliation"
    # (made by the reconciliation run ``derived_from`` from the partner's API)
    origin: str
    derived_from: str | None  # the partner's event it was normalized from
    version: int | None  # of its type's schema in the event catalog, when normalized


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


# jobs --------------------------------------------------------------------------------------------


class RedriveIn(msgspec.Struct, forbid_unknown_fields=True):
    """Which dead deliveries to send again: all of the tenant's, or those matching."""

    endpoint_id: Id | None = None
    type: Pattern | None = None  # the event's type, exactly
    after: Instant | None = None  # created at or after
    before: Instant | None = None  # created before
    rate: JobRate | None = None  # items per second, at most


class ReplayJobIn(msgspec.Struct, forbid_unknown_fields=True):
    """Events to send again to one endpoint: listed by id, or matching a filter."""

    endpoint_id: Id
    event_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_EVENT_IDS)] | None = (
        None
    )
    type: Pattern | None = None
    source_id: Id | None = None
    after: Instant | None = None  # received at or after
    before: Instant | None = None  # received before
    rate: JobRate | None = None


_TIMES = ("created_after", "created_before", "received_after", "received_before")


class JobOut(msgspec.Struct):
    id: str
    kind: str
    status: str
    filter: dict[str, Any]
    endpoint_id: str | None  # where a replay sends
    rate: float
    total: int | None
    done: int
    skipped: int
    eta_seconds: float | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    last_error: str | None

    @classmethod
    def of(cls, j: Job, now: float) -> JobOut:
        shown = msgspec.to_builtins(j.filter)
        for name in _TIMES:
            if name in shown:
                shown[name] = iso(shown[name])
        if isinstance(j.filter, ReplayFilter) and not j.filter.event_ids:
            shown.pop("event_ids", None)
        eta = eta_seconds(j, now)
        return cls(
            id=j.id,
            kind=j.kind.value,
            status=j.status.value,
            filter=shown,
            endpoint_id=j.endpoint_id,
            rate=j.rate,
            total=j.total,
            done=j.done,
            skipped=j.skipped,
            eta_seconds=None if eta is None else round(eta, 1),
            created_at=iso(j.created_at),
            started_at=iso(j.started_at),
            finished_at=iso(j.finished_at),
            last_error=j.last_error,
        )


# connections -------------------------------------------------------------------------------------

# RFC 6749 §3.3: a scope token is printable ASCII without spaces, quotes or backslashes.
Scope = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")
]


class ConnectionIn(msgspec.Struct, forbid_unknown_fields=True):
    """``client_credentials``, or ``authorization_code`` with the ``refresh_token`` the user's
    consent gave, or the ``authorization_code`` itself (and its ``redirect_uri``) to exchange."""

    partner: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    token_url: Url
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    flow: ConnectionFlow = ConnectionFlow.CLIENT_CREDENTIALS
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)] | None = None
    authorization_code: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    redirect_uri: Url | None = None


class RefreshCounts(msgspec.Struct):
    ok: int
    failed: int


class ConnectionOut(msgspec.Struct):
    """A connection's state; never its client secret or tokens."""

    id: str
    partner: str
    flow: str
    token_url: str
    client_id: str
    scopes: list[str]
    status: str
    expires_at: str | None
    refresh_due_at: str | None
    last_refreshed_at: str | None
    next_attempt_at: str | None
    refresh_count: RefreshCounts
    consecutive_failures: int
    last_error: str | None
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, c: Connection, now: float) -> ConnectionOut:
        return cls(
            id=c.id,
            partner=c.partner,
            flow=c.flow.value,
            token_url=c.token_url,
            client_id=c.client_id,
            scopes=list(c.scopes),
            status=c.status(now).value,
            expires_at=iso(c.expires_at),
            refresh_due_at=iso(c.refresh_due_at),
            last_refreshed_at=iso(c.last_refreshed_at),
            next_attempt_at=iso(c.next_attempt_at) if c.failing else None,
            refresh_count=RefreshCounts(c.refresh_ok_count, c.refresh_failed_count),
            consecutive_failures=c.consecutive_failures,
            last_error=c.last_error,
            created_at=iso(c.created_at),
            updated_at=iso(c.updated_at),
        )
