"""``Interlink``: the same client, blocking. It runs :class:`AsyncInterlink` on a private event
loop, so both share every request, decoding and error rule; do not use it inside a running
event loop (use the async client there)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from interlink_client.client import DEFAULT_TIMEOUT, AsyncInterlink
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

R = TypeVar("R")


class Interlink:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(self._make(base_url, api_key, timeout))

    @staticmethod
    async def _make(base_url: str, api_key: str, timeout: float) -> AsyncInterlink:
        return AsyncInterlink(base_url, api_key, timeout=timeout)  # bound to the runner's loop

    def _run(self, call: Coroutine[Any, Any, R]) -> R:
        return self._runner.run(call)

    def __enter__(self) -> Interlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._client.aclose())
        self._runner.close()

    def list_sources(self, **query: Any) -> Page[Source]:
        return self._run(self._client.list_sources(**query))

    def create_source(self, name: str, **settings: Any) -> SourceCreated:
        return self._run(self._client.create_source(name, **settings))

    def get_source(self, source_id: str) -> Source:
        return self._run(self._client.get_source(source_id))

    def delete_source(self, source_id: str) -> None:
        self._run(self._client.delete_source(source_id))

    def list_endpoints(self, **query: Any) -> Page[Endpoint]:
        return self._run(self._client.list_endpoints(**query))

    def create_endpoint(self, url: str | None = None, **settings: Any) -> EndpointCreated:
        return self._run(self._client.create_endpoint(url, **settings))

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return self._run(self._client.get_endpoint(endpoint_id))

    def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        return self._run(self._client.update_endpoint(endpoint_id, **changes))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._run(self._client.delete_endpoint(endpoint_id))

    def list_subscriptions(self, **query: Any) -> Page[Subscription]:
        return self._run(self._client.list_subscriptions(**query))

    def create_subscription(self, endpoint_id: str, event_types: list[str]) -> Subscription:
        return self._run(self._client.create_subscription(endpoint_id, event_types))

    def get_subscription(self, subscription_id: str) -> Subscription:
        return self._run(self._client.get_subscription(subscription_id))

    def delete_subscription(self, subscription_id: str) -> None:
        self._run(self._client.delete_subscription(subscription_id))

    def list_events(self, **query: Any) -> Page[Event]:
        return self._run(self._client.list_events(**query))

    def iter_events(self, **query: Any) -> Iterator[Event]:
        while True:
            page = self.list_events(**query)
            yield from page.data
            if page.next_cursor is None:
                return
            query = {**query, "cursor": page.next_cursor}

    def get_event(self, event_id: str) -> Event:
        return self._run(self._client.get_event(event_id))

    def publish(self, type: str, data: dict[str, Any], **options: Any) -> Published:
        """``options``: key, idempotency_key, occurred_at."""
        return self._run(self._client.publish(type, data, **options))

    def publish_batch(self, events: Sequence[EventToPublish | Mapping[str, Any]]) -> PublishedBatch:
        return self._run(self._client.publish_batch(events))

    def list_deliveries(self, **query: Any) -> Page[Delivery]:
        return self._run(self._client.list_deliveries(**query))

    def get_delivery(self, delivery_id: str) -> Delivery:
        return self._run(self._client.get_delivery(delivery_id))

    def retry_delivery(self, delivery_id: str) -> Delivery:
        return self._run(self._client.retry_delivery(delivery_id))
