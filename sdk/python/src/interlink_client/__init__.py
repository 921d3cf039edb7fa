"""The Python client of Interlink: ``AsyncInterlink`` (and the blocking ``Interlink``) for the
management and publish APIs; ``interlink_client.outbox`` for the transactional outbox."""

from interlink_client.client import AsyncInterlink
from interlink_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InterlinkError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    Unprocessable,
)
from interlink_client.models import (
    Delivery,
    Endpoint,
    EndpointCreated,
    Event,
    EventToPublish,
    Page,
    Published,
    PublishedBatch,
    Source,
    SourceCreated,
    Subscription,
)
from interlink_client.sync import Interlink

__all__ = [
    "ApiError",
    "AsyncInterlink",
    "BadRequest",
    "Conflict",
    "Delivery",
    "Endpoint",
    "EndpointCreated",
    "Event",
    "EventToPublish",
    "Forbidden",
    "Interlink",
    "InterlinkError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Published",
    "PublishedBatch",
    "ServerError",
    "Source",
    "SourceCreated",
    "Subscription",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
]
