"""The shapes the client sends and decodes, named after the server's schemas (``Source`` is
``SourceOut``; ``NewSource`` is ``SourceIn``). Decoding ignores fields the client does not know,
so a server that adds one is not a break; the drift test (tests/integration/test_sdk_drift.py)
checks every field here against the server's live OpenAPI document."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec

T = TypeVar("T")


class _Out(msgspec.Struct, kw_only=True):
    pass


class _In(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A request body: fields left at their default (None) are not sent, so the server's
    defaults apply."""


# decoded ------------------------------------------------------------------------------------


class Page(_Out, Generic[T]):
    """One page of a list: ``next_cursor`` is None on the last."""

    data: list[T]
    next_cursor: str | None


class Source(_Out):
    schema_name: ClassVar[str] = "SourceOut"
    id: str
    name: str
    verifier: str
    ingest_url: str
    kit: str | None
    created_at: str | None


class SourceCreated(_Out):
    schema_name: ClassVar[str] = "SourceCreated"
    source: Source
    secrets: list[str]  # shown once: the signing secrets the partner signs with


class Endpoint(_Out):
    schema_name: ClassVar[str] = "EndpointOut"
    id: str
    # "push": delivered to its url; "pull": claimed by consumers (no url); "kafka": produced
    # to kafka's topic (no url)
    kind: str
    url: str | None
    kafka: dict[str, Any] | None  # a Kafka endpoint's cluster, topic and key template
    description: str
    status: str
    ordering: str
    concurrency: int
    retry_schedule: list[float]
    timeout_seconds: float
    disabled_reason: str | None
    created_at: str | None


class EndpointCreated(_Out):
    schema_name: ClassVar[str] = "EndpointCreated"
    endpoint: Endpoint
    secret: str | None  # shown once (push): verify Interlink's signatures with it


class Subscription(_Out):
    schema_name: ClassVar[str] = "SubscriptionOut"
    id: str
    endpoint_id: str
    event_types: list[str]
    created_at: str | None


class Event(_Out):
    schema_name: ClassVar[str] = "EventOut"
    id: str
    source_id: str
    type: str
    key: str | None
    idempotency_key: str
    origin: str
    data: Any
    received_at: str | None
    occurred_at: str | None


class Published(_Out):
    schema_name: ClassVar[str] = "PublishedOut"
    id: str  # for a duplicate, the id of the event first published under its idempotency key
    duplicate: bool


class PublishedBatch(_Out):
    schema_name: ClassVar[str] = "PublishedBatchOut"
    data: list[Published]  # in the order of the batch's events


class Delivery(_Out):
    schema_name: ClassVar[str] = "DeliveryOut"
    id: str
    event_id: str
    endpoint_id: str
    status: str
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None


class Message(_Out):
    """A claimed delivery of a pull endpoint, with its event: yours until ``lease_expires_at``;
    answer it (ack or nack) under ``lease_id``."""

    schema_name: ClassVar[str] = "ClaimedOut"
    delivery_id: str
    lease_id: str
    lease_expires_at: str | None
    attempt: int  # 1 on the first claim; a nack makes the next claim's 2
    event_id: str
    type: str
    key: str | None
    data: Any
    occurred_at: str | None
    received_at: str | None


class Lease(_Out):
    schema_name: ClassVar[str] = "LeaseOut"
    lease_id: str
    lease_expires_at: str | None


class Claims(_Out):
    schema_name: ClassVar[str] = "ClaimsOut"
    data: list[Message]  # empty when none came within wait_seconds


# sent ---------------------------------------------------------------------------------------


class NewSource(_In):
    name: str
    verifier: str | None = None
    secrets: list[str] | None = None
    kit: str | None = None


class NewEndpoint(_In):
    url: str | None = None  # required for a push endpoint
    kind: str | None = None  # "push" (the default), "pull" or "kafka"
    # kind "kafka": {"cluster": a cluster the operator granted you, "topic", "key": template}
    kafka: dict[str, Any] | None = None
    description: str | None = None
    secret: str | None = None
    ordering: str | None = None  # "ordered": one key's events one at a time, in order
    concurrency: int | None = None
    retry_schedule: list[float] | None = None
    timeout_seconds: float | None = None


class EndpointChanges(_In):
    url: str | None = None
    description: str | None = None
    status: str | None = None  # "active", "paused" or "disabled"
    ordering: str | None = None
    concurrency: int | None = None
    retry_schedule: list[float] | None = None
    timeout_seconds: float | None = None


class NewSubscription(_In):
    endpoint_id: str
    event_types: list[str]


class EventToPublish(_In):
    """One event of your own: ``key`` orders (an ordered endpoint gets a key's events in
    publish order), ``idempotency_key`` dedupes (the same key again answers the first event)."""

    type: str
    data: dict[str, Any]
    key: str | None = None
    idempotency_key: str | None = None
    occurred_at: str | float | None = None  # RFC 3339 or epoch seconds


class Batch(_In):
    events: list[EventToPublish]


class Claim(_In):
    max: int | None = None  # up to 100
    lease_seconds: float | None = None
    wait_seconds: float | None = None  # a long poll, up to 30 s


class Ack(_In):
    lease_id: str


class Nack(_In):
    lease_id: str
    error: str | None = None
    retry_after_seconds: float | None = None  # none: the endpoint's retry schedule


class LeaseExtension(_In):
    lease_id: str
    lease_seconds: float | None = None
