"""Traces: the ingest span starts a trace, its traceparent is what the event keeps, and each
delivery attempt made from that string is a child span in the same trace, sending the trace
on to the receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode

from interlink.domain.delivery import AttemptOutcome
from interlink.observability import tracing

PARTNER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(exporter=exporter)
    yield exporter
    tracing.shutdown()


def test_ingest_then_attempt_share_one_trace(exporter: InMemorySpanExporter) -> None:
    span, traceparent = tracing.start_ingest_span({"content-type": "application/json"}, "src_1")
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
    assert int(flags, 16) & 1  # sampled
    tracing.end_ingest_span(span, 202, event_id="evt_1", duplicate=False)

    headers = {"webhook-id": "evt_1"}
    with tracing.attempt_span(
        traceparent, "ep_1", delivery_id="dlv_1", event_id="evt_1", attempt=1
    ) as attempt:
        tracing.inject(headers)
        tracing.record_attempt(attempt, AttemptOutcome.SUCCEEDED, 200)

    ingest, deliver = exporter.get_finished_spans()
    assert ingest.name == "ingest" and ingest.kind is SpanKind.SERVER
    assert deliver.name == "deliver" and deliver.kind is SpanKind.CLIENT
    assert f"{ingest.context.trace_id:032x}" == trace_id
    assert deliver.context.trace_id == ingest.context.trace_id
    assert deliver.parent is not None and deliver.parent.span_id == ingest.context.span_id
    assert ingest.attributes is not None and ingest.attributes["interlink.event_id"] == "evt_1"
    assert deliver.attributes is not None and deliver.attributes["http.response.status_code"] == 200
    # The receiver gets the attempt's own span, in the same trace.
    sent = headers["traceparent"].split("-")
    assert sent[1] == trace_id and sent[2] == f"{deliver.context.span_id:016x}"


def test_a_partners_traceparent_is_a_link_not_the_parent(exporter: InMemorySpanExporter) -> None:
    span, traceparent = tracing.start_ingest_span({"traceparent": PARTNER})
    tracing.end_ingest_span(span, 202)
    (ingest,) = exporter.get_finished_spans()
    assert ingest.parent is None  # a root: the sender does not choose our trace id
    assert traceparent is not None and PARTNER.split("-")[1] not in traceparent
    assert [f"{link.context.trace_id:032x}" for link in ingest.links] == [PARTNER.split("-")[1]]


def test_failed_attempt_and_server_error_are_marked(exporter: InMemorySpanExporter) -> None:
    span, traceparent = tracing.start_ingest_span({})
    tracing.end_ingest_span(span, 503, reason="unavailable")
    with tracing.attempt_span(traceparent, "ep_1") as attempt:
        tracing.record_attempt(attempt, AttemptOutcome.ERROR, None, "connection refused")
    ingest, deliver = exporter.get_finished_spans()
    assert ingest.status.status_code is StatusCode.ERROR
    assert deliver.status.status_code is StatusCode.ERROR
    assert deliver.status.description == "connection refused"


def test_an_attempt_without_stored_context_starts_its_own_trace(
    exporter: InMemorySpanExporter,
) -> None:
    with tracing.attempt_span(None, "ep_1"):
        pass
    (deliver,) = exporter.get_finished_spans()
    assert deliver.parent is None


def test_off_by_default_and_then_inert() -> None:
    tracing.shutdown()
    assert not tracing.configure(env={})
    assert not tracing.enabled()
    span, traceparent = tracing.start_ingest_span({"traceparent": PARTNER})
    assert span is INVALID_SPAN and traceparent is None
    tracing.end_ingest_span(span, 202)
    headers: dict[str, str] = {}
    with tracing.attempt_span(PARTNER, "ep_1") as attempt:
        assert attempt is INVALID_SPAN
        tracing.inject(headers)
    assert headers == {}


@pytest.mark.parametrize(
    ("env", "setting", "on"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, False, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, False, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, True, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, True, False),
    ],
)
def test_enabled_by_setting_or_standard_env(env: dict[str, str], setting: bool, on: bool) -> None:
    assert tracing.wanted(setting, env) is on


def test_configure_with_the_otlp_exporter_from_env() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    try:
        assert tracing.configure(env=env)
        assert tracing.enabled()
    finally:
        tracing.shutdown()  # nothing was recorded, so nothing is sent
    assert not tracing.enabled()


def test_an_unknown_exporter_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported exporter"):
        tracing.configure(env={"OTEL_TRACES_EXPORTER": "zipkin"})
    tracing.shutdown()
