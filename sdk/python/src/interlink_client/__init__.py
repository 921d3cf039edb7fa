"""The Python client of Interlink: ``AsyncInterlink`` (and the blocking ``Interlink``) for the
management, publish and consumer APIs; ``Consumer`` for pull consumers;
``interlink_client.outbox`` for the transactional outbox."""

from interlink_client.client import AsyncInterlink
from interlink_client.consumer import Consumer, Hooks, Retry
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
    Message,
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
    "Consumer",
    "Delivery",
    "Endpoint",
    "EndpointCreated",
    "Event",
    "EventToPublish",
    "Forbidden",
    "Hooks",
    "Interlink",
    "InterlinkError",
    "Message",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Published",
    "PublishedBatch",
    "Retry",
    "ServerError",
    "Source",
    "SourceCreated",
    "Subscription",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
]
