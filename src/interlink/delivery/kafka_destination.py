"""The Kafka destination: a delivery as one record in the endpoint's topic.

The record's value is the webhook envelope a push endpoint would be POSTed (byte for byte),
its key the endpoint's key template filled in (default: the event's ordering key), its headers
``webhook-id`` (the event id), the event type, the tenant and the trace context. The attempt
succeeds only when the broker acknowledged the record (acks=all, an idempotent producer); any
other outcome is a failed attempt, retried on the endpoint's schedule like an HTTP failure.

The grant is checked again here, at each send, against the running configuration: a grant the
operator withdrew stops deliveries at once (failed attempts naming why), whatever endpoints
were created under it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from interlink.config import KafkaSettings
from interlink.delivery.kafka_producer import Headers, ProduceError
from interlink.domain import kafka
from interlink.domain.delivery import AttemptOutcome, AttemptResult
from interlink.storage.ports import Claimed


class Producers(Protocol):
    """The Kafka client's port: produce one record and wait for the broker's acknowledgement,
    raising ProduceError when it does not come."""

    async def produce(
        self,
        cluster: str,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
    ) -> None: ...


# (cluster, seconds, error code or None): what metrics count of each record produced.
Observe = Callable[[str, float, str | None], None]


class KafkaDestination:
    def __init__(
        self, settings: KafkaSettings, producers: Producers, observe: Observe | None = None
    ) -> None:
        self._grants = settings.grants()
        self._producers = producers
        self._observe = observe

    async def deliver(self, c: Claimed, body: bytes, trace: dict[str, str]) -> AttemptResult:
        target = c.kafka
        if target is None:
            return _failed(0.0, "kafka endpoint without a target")
        problem = kafka.target_problem(self._grants, c.tenant_id, target)
        if problem is not None:
            return _failed(0.0, f"not granted any more: {problem}")
        key = kafka.record_key(
            target.key,
            key=c.key,
            event_type=c.event_type,
            event_id=c.event_id,
            tenant_id=c.tenant_id,
            endpoint_id=c.endpoint_id,
        )
        headers: Headers = [*kafka.record_headers(c.event_id, c.event_type, c.tenant_id)]
        headers.extend((name, value.encode()) for name, value in trace.items())
        started = time.perf_counter()
        try:
            await self._producers.produce(target.cluster, target.topic, key, body, headers)
        except ProduceError as exc:
            seconds = time.perf_counter() - started
            if self._observe is not None:
                self._observe(target.cluster, seconds, exc.code)
            return _failed(seconds * 1000, str(exc))
        seconds = time.perf_counter() - started
        if self._observe is not None:
            self._observe(target.cluster, seconds, None)
        return AttemptResult(AttemptOutcome.SUCCEEDED, None, seconds * 1000)


def _failed(latency_ms: float, error: str) -> AttemptResult:
    return AttemptResult(AttemptOutcome.FAILED, None, latency_ms, error=error)
