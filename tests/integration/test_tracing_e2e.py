"""One trace per webhook, through the running system: the ingest span, its traceparent kept
with the event, the delivery attempts as its children, and the trace id on the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.conftest import Harness, eventually
from tests.integration.test_delivery import send, wire

from interlink.observability import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    yield exporter
    tracing.shutdown()


async def test_ingest_and_attempts_share_one_trace(
    spans: InMemorySpanExporter, harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory(answers=[503])
    source, secret, ep = await wire(harness, key, receiver.url, retry_schedule=[0, 0.05])
    receiver.secret, endpoint_id = ep.split("|")
    event_id = await send(harness, source, secret, "m1")
    await eventually(lambda: len(receiver.received) == 2)
    await eventually(
        lambda: len([s for s in spans.get_finished_spans() if s.name == "deliver"]) == 2
    )

    finished = spans.get_finished_spans()
    (ingest,) = [s for s in finished if s.name == "ingest"]
    attempts = [s for s in finished if s.name == "deliver"]
    trace_id = ingest.context.trace_id
    assert all(a.context.trace_id == trace_id for a in attempts)
    assert all(
        a.parent is not None and a.parent.span_id == ingest.context.span_id for a in attempts
    )
    assert ingest.attributes is not None and ingest.attributes["interlink.event_id"] == event_id
    assert sorted(a.attributes["interlink.attempt"] for a in attempts if a.attributes) == [1, 2]
    assert {a.attributes["interlink.endpoint_id"] for a in attempts if a.attributes} == {
        endpoint_id
    }

    r = await harness.get(key, f"/api/v1/events/{event_id}/timeline")
    received = r.json()["steps"][0]
    assert received["step"] == "received" and received["trace_id"] == f"{trace_id:032x}"
