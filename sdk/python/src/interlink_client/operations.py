"""Every operation the client calls, declared once: method, path template, the query parameters
and body it sends, the status it expects and the shape it decodes. The clients call only what is
declared here, and the drift test holds each declaration to the server's live ``/openapi.json``
(:func:`interlink_client.drift.check`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from interlink_client.models import (
    Ack,
    Batch,
    Claim,
    Claims,
    Delivery,
    Endpoint,
    EndpointChanges,
    EndpointCreated,
    Event,
    EventToPublish,
    Lease,
    LeaseExtension,
    Nack,
    NewEndpoint,
    NewSource,
    NewSubscription,
    Page,
    Published,
    PublishedBatch,
    Source,
    SourceCreated,
    Subscription,
)

R = TypeVar("R")

PAGING = ("limit", "cursor")


@dataclass(frozen=True)
class Operation(Generic[R]):
    method: str
    path: str
    status: int  # the success the server documents; any other 2xx is drift too
    decodes: Any  # the model of the answer (R), None for an empty one (204)
    sends: type[msgspec.Struct] | None = None
    query: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


LIST_SOURCES = Operation[Page[Source]]("GET", "/api/v1/sources", 200, Page[Source], query=PAGING)
CREATE_SOURCE = Operation[SourceCreated]("POST", "/api/v1/sources", 201, SourceCreated, NewSource)
GET_SOURCE = Operation[Source]("GET", "/api/v1/sources/{source_id}", 200, Source)
DELETE_SOURCE = Operation[None]("DELETE", "/api/v1/sources/{source_id}", 204, None)

LIST_ENDPOINTS = Operation[Page[Endpoint]](
    "GET", "/api/v1/endpoints", 200, Page[Endpoint], query=PAGING
)
CREATE_ENDPOINT = Operation[EndpointCreated](
    "POST", "/api/v1/endpoints", 201, EndpointCreated, NewEndpoint
)
GET_ENDPOINT = Operation[Endpoint]("GET", "/api/v1/endpoints/{endpoint_id}", 200, Endpoint)
UPDATE_ENDPOINT = Operation[Endpoint](
    "PATCH", "/api/v1/endpoints/{endpoint_id}", 200, Endpoint, EndpointChanges
)
DELETE_ENDPOINT = Operation[None]("DELETE", "/api/v1/endpoints/{endpoint_id}", 204, None)

LIST_SUBSCRIPTIONS = Operation[Page[Subscription]](
    "GET", "/api/v1/subscriptions", 200, Page[Subscription], query=(*PAGING, "endpoint_id")
)
CREATE_SUBSCRIPTION = Operation[Subscription](
    "POST", "/api/v1/subscriptions", 201, Subscription, NewSubscription
)
GET_SUBSCRIPTION = Operation[Subscription](
    "GET", "/api/v1/subscriptions/{subscription_id}", 200, Subscription
)
DELETE_SUBSCRIPTION = Operation[None](
    "DELETE", "/api/v1/subscriptions/{subscription_id}", 204, None
)

LIST_EVENTS = Operation[Page[Event]](
    "GET",
    "/api/v1/events",
    200,
    Page[Event],
    query=(*PAGING, "type", "source_id", "after", "before"),
)
GET_EVENT = Operation[Event]("GET", "/api/v1/events/{event_id}", 200, Event)
PUBLISH = Operation[Published]("POST", "/api/v1/events", 202, Published, EventToPublish)
PUBLISH_BATCH = Operation[PublishedBatch](
    "POST", "/api/v1/events/batch", 202, PublishedBatch, Batch
)

LIST_DELIVERIES = Operation[Page[Delivery]](
    "GET",
    "/api/v1/deliveries",
    200,
    Page[Delivery],
    query=(*PAGING, "status", "endpoint_id", "event_id", "type", "after", "before"),
)
GET_DELIVERY = Operation[Delivery]("GET", "/api/v1/deliveries/{delivery_id}", 200, Delivery)
RETRY_DELIVERY = Operation[Delivery](
    "POST", "/api/v1/deliveries/{delivery_id}/retry", 202, Delivery
)

CLAIM = Operation[Claims]("POST", "/api/v1/endpoints/{endpoint_id}/claims", 200, Claims, Claim)
ACK = Operation[Delivery]("POST", "/api/v1/deliveries/{delivery_id}/ack", 200, Delivery, Ack)
EXTEND_LEASE = Operation[Lease](
    "POST", "/api/v1/deliveries/{delivery_id}/lease", 200, Lease, LeaseExtension
)
NACK = Operation[Delivery]("POST", "/api/v1/deliveries/{delivery_id}/nack", 200, Delivery, Nack)

OPERATIONS: tuple[Operation[Any], ...] = (
    LIST_SOURCES,
    CREATE_SOURCE,
    GET_SOURCE,
    DELETE_SOURCE,
    LIST_ENDPOINTS,
    CREATE_ENDPOINT,
    GET_ENDPOINT,
    UPDATE_ENDPOINT,
    DELETE_ENDPOINT,
    LIST_SUBSCRIPTIONS,
    CREATE_SUBSCRIPTION,
    GET_SUBSCRIPTION,
    DELETE_SUBSCRIPTION,
    LIST_EVENTS,
    GET_EVENT,
    PUBLISH,
    PUBLISH_BATCH,
    LIST_DELIVERIES,
    GET_DELIVERY,
    RETRY_DELIVERY,
    CLAIM,
    ACK,
    NACK,
    EXTEND_LEASE,
)
