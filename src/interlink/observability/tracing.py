"""OpenTelemetry traces: one trace per webhook, from its ingest to each delivery attempt.

Off by default, and then free: no provider, no spans, each helper returns at its first line.
On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` is set, or the ``tracing`` setting is true; ``OTEL_SDK_DISABLED=true``
wins over all of them. Everything else is the SDK's own ``OTEL_*`` reading: service name and
resource attributes, sampler, batch processor limits, the exporter's endpoint and headers.

The ingest span starts the trace; its W3C ``traceparent`` is stored with the event, and each
delivery attempt, however much later and in whichever process, is a child span of it and sends
its own ``traceparent`` to the receiver.

The helpers keep their own provider rather than setting OpenTelemetry's global one, which can
be set only once per process: tests configure and reset it freely.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from interlink.domain.delivery import AttemptOutcome

TRACER_NAME: Final = "interlink"

_propagator: Final = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def wanted(setting: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """Whether tracing is asked for, by the setting or by the standard environment variables."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(
        setting
        or exporters
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    out: list[SpanExporter] = []
    for name in names:
        if name == "console":
            out.append(ConsoleSpanExporter())
        elif name in ("otlp", ""):
            # Imported here: protobuf and requests load only where traces are exported.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # OTLP over HTTP/protobuf only: OTEL_EXPORTER_OTLP_PROTOCOL=grpc would need the
            # gRPC exporter, which Interlink does not ship; the endpoint must speak HTTP (4318).
            out.append(OTLPSpanExporter())
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    return out


def configure(
    setting: bool = False,
    *,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Installs the tracer if tracing is wanted (or an ``exporter`` is given, for tests).

    Returns whether tracing is on. A given ``exporter`` is used synchronously (each span
    exported as it ends), which is what a test of the spans needs.
    """
    shutdown()
    env = os.environ if env is None else env
    if exporter is None and not wanted(setting, env):
        return False
    global _provider, _tracer
    # The SDK reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER itself;
    # a service left unnamed there is "interlink" rather than the SDK's "unknown_service".
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "interlink"}))
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for each in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(each))
    _provider, _tracer = provider, provider.get_tracer(TRACER_NAME)
    return True


def shutdown() -> None:
    """Flushes and drops the tracer: spans ended so far are exported, later ones are not made."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def _traceparent(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def start_ingest_span(
    headers: Mapping[str, str], source_id: str | None = None
) -> tuple[Span, str | None]:
    """Starts the span of one ingest request; returns it with the traceparent to store.

    The span is the root of a new trace. A ``traceparent`` the partner sent becomes a link,
    not the parent: the ingest URL is public, and a sender must not be able to choose our
    trace ids or join our traces to theirs. End the span with ``end_ingest_span``.
    """
    if _tracer is None:
        return INVALID_SPAN, None
    links: list[Link] = []
    if "traceparent" in headers:
        sent = trace.get_current_span(_propagator.extract(headers)).get_span_context()
        if sent.is_valid:
            links.append(Link(sent))
    attributes: dict[str, Any] = {"http.request.method": "POST", "http.route": "/in/{source_id}"}
    if source_id is not None:
        attributes["interlink.source_id"] = source_id
    span = _tracer.start_span(
        "ingest",
        context=otel_context.Context(),  # a root, whatever is current
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=links,
    )
    return span, _traceparent(span)


def end_ingest_span(
    span: Span,
    status_code: int,
    *,
    source_id: str | None = None,
    event_id: str | None = None,
    duplicate: bool | None = None,
    reason: str | None = None,
) -> None:
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status_code)
    if source_id is not None:
        span.set_attribute("interlink.source_id", source_id)
    if event_id is not None:
        span.set_attribute("interlink.event_id", event_id)
    if duplicate is not None:
        span.set_attribute("interlink.duplicate", duplicate)
    if reason is not None:
        span.set_attribute("interlink.rejection_reason", reason)
    if status_code >= 500:  # a 4xx is the sender's error, not ours (semantic conventions)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


@contextlib.contextmanager
def attempt_span(
    traceparent: str | None,
    endpoint_id: str,
    *,
    delivery_id: str | None = None,
    event_id: str | None = None,
    attempt: int | None = None,
) -> Iterator[Span]:
    """The span of one delivery attempt, a child of the stored ingest context; current inside,
    so ``inject`` inside it sends this span's traceparent. Without a stored traceparent (events
    from before tracing was on) it is the root of a trace of its own."""
    if _tracer is None:
        yield INVALID_SPAN
        return
    parent = (
        _propagator.extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
    )
    attributes: dict[str, Any] = {
        "http.request.method": "POST",
        "interlink.endpoint_id": endpoint_id,
    }
    if delivery_id is not None:
        attributes["interlink.delivery_id"] = delivery_id
    if event_id is not None:
        attributes["interlink.event_id"] = event_id
    if attempt is not None:
        attributes["interlink.attempt"] = attempt
    with _tracer.start_as_current_span(
        "deliver", context=parent, kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield span


def record_attempt(
    span: Span,
    outcome: AttemptOutcome | str,
    status_code: int | None,
    error: str | None = None,
) -> None:
    """Puts an attempt's result on its span (before the span ends)."""
    if not span.is_recording():
        return
    span.set_attribute("interlink.outcome", str(outcome))
    if status_code is not None:
        span.set_attribute("http.response.status_code", status_code)
    if outcome != AttemptOutcome.SUCCEEDED:
        span.set_status(Status(StatusCode.ERROR, error[:200] if error else None))


def inject(headers: MutableMapping[str, str]) -> None:
    """Adds the current span's ``traceparent`` (and ``tracestate``) to outbound headers."""
    if _tracer is None:
        return
    _propagator.inject(headers)
