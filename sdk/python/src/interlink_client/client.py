"""``AsyncInterlink``: the management and publish APIs of one tenant, over httpx.

Every method is one declared operation (operations.py): the request is built from it, and its
answer decoded into its model or raised as an :class:`~interlink_client.errors.ApiError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from interlink_client import operations as ops
from interlink_client.errors import TransportError, api_error
from interlink_client.models import (
    Ack,
    Batch,
    Claim,
    Delivery,
    Endpoint,
    EndpointChanges,
    EndpointCreated,
    Event,
    EventToPublish,
    LeaseExtension,
    Message,
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
from interlink_client.operations import Operation

R = TypeVar("R")
T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "interlink-client/0.1"


def _event(item: EventToPublish | Mapping[str, Any]) -> EventToPublish:
    return item if isinstance(item, EventToPublish) else EventToPublish(**item)


class AsyncInterlink:
    """A tenant's client: ``AsyncInterlink("http://127.0.0.1:8400", api_key)``; use it as an
    async context manager, or call :meth:`aclose`. ``transport`` lets a test hand it an
    in-process ASGI app."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncInterlink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        op: Operation[R],
        path: Mapping[str, str] | None = None,
        *,
        body: msgspec.Struct | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> R:
        """One declared operation: the building block of every method."""
        if body is not None and (op.sends is None or not isinstance(body, op.sends)):
            raise TypeError(f"{op.name} sends {op.sends}, not {type(body).__name__}")
        url = op.path.format(**{k: quote(v, safe="") for k, v in (path or {}).items()})
        params = {k: v for k, v in (query or {}).items() if v is not None}
        unknown = set(params) - set(op.query)
        if unknown:
            raise TypeError(f"{op.name} takes no query parameter {sorted(unknown)}")
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self._http.request(
                op.method, url, params=params, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise TransportError(f"{op.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise api_error(response)
        if op.decodes is None:
            return None  # type: ignore[return-value]  # Operation[None]: nothing to decode
        decoded: R = msgspec.json.decode(response.content, type=op.decodes)
        return decoded

    async def iterate(self, op: Operation[Page[T]], **query: Any) -> AsyncIterator[T]:
        """Every item of a list operation, following its cursor page by page."""
        while True:
            page = await self.call(op, query=query)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            query = {**query, "cursor": page.next_cursor}

    # sources ----------------------------------------------------------------------------------

    async def list_sources(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Source]:
        return await self.call(ops.LIST_SOURCES, query={"limit": limit, "cursor": cursor})

    async def create_source(
        self,
        name: str,
        *,
        verifier: str | None = None,
        secrets: list[str] | None = None,
        kit: str | None = None,
    ) -> SourceCreated:
        body = NewSource(name=name, verifier=verifier, secrets=secrets, kit=kit)
        return await self.call(ops.CREATE_SOURCE, body=body)

    async def get_source(self, source_id: str) -> Source:
        return await self.call(ops.GET_SOURCE, {"source_id": source_id})

    async def delete_source(self, source_id: str) -> None:
        await self.call(ops.DELETE_SOURCE, {"source_id": source_id})

    # endpoints --------------------------------------------------------------------------------

    async def list_endpoints(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Endpoint]:
        return await self.call(ops.LIST_ENDPOINTS, query={"limit": limit, "cursor": cursor})

    async def create_endpoint(self, url: str | None = None, **settings: Any) -> EndpointCreated:
        """``settings``: kind, kafka, description, secret, ordering, concurrency,
        retry_schedule, timeout_seconds (models.NewEndpoint); a pull endpoint (``kind="pull"``)
        and a Kafka endpoint (``kind="kafka"``, ``kafka={"cluster", "topic"}``) have no url."""
        return await self.call(ops.CREATE_ENDPOINT, body=NewEndpoint(url=url, **settings))

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return await self.call(ops.GET_ENDPOINT, {"endpoint_id": endpoint_id})

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        body = EndpointChanges(**changes)
        return await self.call(ops.UPDATE_ENDPOINT, {"endpoint_id": endpoint_id}, body=body)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self.call(ops.DELETE_ENDPOINT, {"endpoint_id": endpoint_id})

    # subscriptions ----------------------------------------------------------------------------

    async def list_subscriptions(
        self,
        *,
        endpoint_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Subscription]:
        query = {"endpoint_id": endpoint_id, "limit": limit, "cursor": cursor}
        return await self.call(ops.LIST_SUBSCRIPTIONS, query=query)

    async def create_subscription(self, endpoint_id: str, event_types: list[str]) -> Subscription:
        body = NewSubscription(endpoint_id=endpoint_id, event_types=event_types)
        return await self.call(ops.CREATE_SUBSCRIPTION, body=body)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        return await self.call(ops.GET_SUBSCRIPTION, {"subscription_id": subscription_id})

    async def delete_subscription(self, subscription_id: str) -> None:
        await self.call(ops.DELETE_SUBSCRIPTION, {"subscription_id": subscription_id})

    # events -----------------------------------------------------------------------------------

    async def list_events(self, **query: Any) -> Page[Event]:
        """``query``: type, source_id, after, before, limit, cursor."""
        return await self.call(ops.LIST_EVENTS, query=query)

    def iter_events(self, **query: Any) -> AsyncIterator[Event]:
        return self.iterate(ops.LIST_EVENTS, **query)

    async def get_event(self, event_id: str) -> Event:
        return await self.call(ops.GET_EVENT, {"event_id": event_id})

    async def publish(
        self,
        type: str,
        data: dict[str, Any],
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        occurred_at: str | float | None = None,
    ) -> Published:
        body = EventToPublish(
            type=type, data=data, key=key, idempotency_key=idempotency_key, occurred_at=occurred_at
        )
        return await self.call(ops.PUBLISH, body=body)

    async def publish_batch(
        self, events: Sequence[EventToPublish | Mapping[str, Any]]
    ) -> PublishedBatch:
        """Up to 1,000 events in one durable transaction: all stored, or none."""
        return await self.call(ops.PUBLISH_BATCH, body=Batch(events=[_event(e) for e in events]))

    # deliveries -------------------------------------------------------------------------------

    async def list_deliveries(self, **query: Any) -> Page[Delivery]:
        """``query``: status, endpoint_id, event_id, type, after, before, limit, cursor."""
        return await self.call(ops.LIST_DELIVERIES, query=query)

    def iter_deliveries(self, **query: Any) -> AsyncIterator[Delivery]:
        return self.iterate(ops.LIST_DELIVERIES, **query)

    async def get_delivery(self, delivery_id: str) -> Delivery:
        return await self.call(ops.GET_DELIVERY, {"delivery_id": delivery_id})

    async def retry_delivery(self, delivery_id: str) -> Delivery:
        return await self.call(ops.RETRY_DELIVERY, {"delivery_id": delivery_id})

    # pull consumers ---------------------------------------------------------------------------

    async def claim(
        self,
        endpoint_id: str,
        *,
        max: int | None = None,
        lease_seconds: float | None = None,
        wait_seconds: float | None = None,
    ) -> list[Message]:
        """Up to ``max`` deliveries of a pull endpoint, leased to you for ``lease_seconds``;
        waits up to ``wait_seconds`` for the first (a long poll). :class:`Consumer` runs the
        loop of claims and answers for you."""
        body = Claim(max=max, lease_seconds=lease_seconds, wait_seconds=wait_seconds)
        claims = await self.call(ops.CLAIM, {"endpoint_id": endpoint_id}, body=body)
        return claims.data

    async def ack(self, message: Message) -> Delivery:
        """Settles a claimed delivery as handled; :class:`Conflict` when its lease is lost."""
        body = Ack(lease_id=message.lease_id)
        return await self.call(ops.ACK, {"delivery_id": message.delivery_id}, body=body)

    async def nack(
        self, message: Message, error: str | None = None, retry_after_seconds: float | None = None
    ) -> Delivery:
        """Fails a claimed delivery into its endpoint's retry schedule (no sooner than
        ``retry_after_seconds``); dead after the last attempt."""
        body = Nack(lease_id=message.lease_id, error=error, retry_after_seconds=retry_after_seconds)
        return await self.call(ops.NACK, {"delivery_id": message.delivery_id}, body=body)

    async def extend_lease(self, message: Message, lease_seconds: float) -> Message:
        """The message's lease, ending ``lease_seconds`` from now instead; the message now
        carries the new ``lease_id`` (answer under it). :class:`Conflict` when it is lost."""
        body = LeaseExtension(lease_id=message.lease_id, lease_seconds=lease_seconds)
        lease = await self.call(ops.EXTEND_LEASE, {"delivery_id": message.delivery_id}, body=body)
        message.lease_id, message.lease_expires_at = lease.lease_id, lease.lease_expires_at
        return message
