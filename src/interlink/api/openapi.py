"""The OpenAPI document as the API enforces it.

Litestar's generator loses what msgspec checks (a constraint on an ``Annotated`` list item or union
member, ``forbid_unknown_fields``) and documents its own error shape, not ours. Here the body
schemas are msgspec's own (the schema of exactly what it decodes), the shared query parameters
get the bounds and enums the handlers check, and every operation lists the problem+json answers
it can give. tests/e2e/test_api_fuzz.py holds the document to it with schemathesis.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from enum import Enum
from typing import Any

import msgspec

from interlink import problems
from interlink.api.params import EVENT_ID_PATTERN, INSTANT_SCHEMA, MAX_LIMIT
from interlink.domain.delivery import DeliveryStatus
from interlink.domain.jobs import JobKind, JobStatus
from interlink.partners.pipeline import Stage

_REF = "#/components/schemas/{name}"
_METHODS = frozenset({"get", "post", "put", "patch", "delete"})

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "description": "Where the body broke a rule, when there are several places "
            "(a published batch: the event's index, a JSON Pointer into it, the message)",
            "type": "array",
            "items": {"type": "object"},
        },
    },
    "required": ["type", "title", "status"],
}

_ERRORS = {
    400: "The request breaks this document: malformed JSON, a wrong type, a value out of bounds",
    401: "No API key, or not a valid one",
    403: "The key may not do this (an admin operation, or a tenant's with the admin key)",
    404: "Not found (another tenant's resources are not found either)",
    409: "The resource's state does not allow it now",
    413: "The body is over the operation's size limit (or a batch over its number of events)",
    422: "Well-formed, but refused by a rule this document cannot state (said in the detail)",
    500: "An unexpected error; the detail and the x-request-id header name its log line",
    503: "The database, or what the operation needs, is unavailable; retry later",
}

# Operations that can conflict with their resource's state (409).
_CONFLICTS = frozenset(
    {
        ("post", "/api/v1/events/{event_id}/replay"),
        ("post", "/api/v1/deliveries/{delivery_id}/retry"),
        ("post", "/api/v1/jobs/{job_id}/cancel"),
        ("post", "/api/v1/quarantine/{entry_id}/reprocess"),
        ("post", "/api/v1/sources/{source_id}/reconciliations"),
        ("post", "/api/v1/endpoints/{endpoint_id}/claims"),  # a push endpoint
        ("post", "/api/v1/deliveries/{delivery_id}/ack"),  # a lease lost, a push delivery
        ("post", "/api/v1/deliveries/{delivery_id}/nack"),
        ("post", "/api/v1/segments"),  # the name is taken
        ("delete", "/api/v1/segments/{name}"),  # a subscription's filter uses it
    }
)


def _values(kind: type[Enum] | tuple[str, ...]) -> list[str]:
    return [str(m.value) for m in kind] if isinstance(kind, type) else list(kind)


# Query parameters whose values are a closed set: (path, name) → the values.
_ENUMS: dict[tuple[str, str], list[str]] = {
    ("/api/v1/deliveries", "status"): _values(DeliveryStatus),
    ("/api/v1/jobs", "status"): _values(JobStatus),
    ("/api/v1/jobs", "kind"): _values(JobKind),
    ("/api/v1/quarantine", "status"): ["open", "resolved"],
    ("/api/v1/quarantine", "stage"): _values(Stage),
}


# Operations whose answer is a stream of Server-Sent Events (api/streams.py): what the document
# says of them beyond Litestar's generator.
STREAMS = frozenset({"/api/v1/stream"})
_MAX_POSITION = 2**63 - 1
_SSE_ANSWER: dict[str, Any] = {
    "description": "A stream of Server-Sent Events until the client goes, falls behind or the "
    "server shuts down: 'id: <position>' and 'data: <event JSON>' per event; "
    "'event: interlink.restart|overflow|shutdown' with 'data: {resume_from|restart_after, "
    "detail}' about the stream; ': keep-alive' heartbeats",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _stream(operation: dict[str, Any]) -> None:
    operation.setdefault("responses", {})["200"] = _SSE_ANSWER
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        if parameter.get("name") == "from":
            parameter["schema"] = {"type": "integer", "minimum": 0, "maximum": _MAX_POSITION}
    parameters.append(
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The id of the last message received (an EventSource sends it when "
            "it reconnects): the stream resumes after it; it wins over 'from'",
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        }
    )


def truthful(document: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    structs = _structs_named(set(schemas))
    if structs:
        _, exact = msgspec.json.schema_components(structs.values(), ref_template=_REF)
        schemas.update(exact)
    schemas["Problem"] = _PROBLEM_SCHEMA
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                _parameters(path, operation)
                _responses(path, method, operation)
                if path in STREAMS:
                    _stream(operation)
    return doc


def _structs_named(names: set[str]) -> dict[str, type[msgspec.Struct]]:
    """Interlink's structs that the document names, when the name is not ambiguous."""
    found: dict[str, list[type[msgspec.Struct]]] = {}
    for cls in _subclasses(msgspec.Struct):
        if cls.__module__.startswith("interlink.") and cls.__name__ in names:
            found.setdefault(cls.__name__, []).append(cls)
    return {name: classes[0] for name, classes in found.items() if len(classes) == 1}


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _parameters(path: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        name = parameter["name"]
        if name == "limit":
            parameter["schema"] = {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": 50,
            }
        elif name in ("after", "before", "since", "until"):
            parameter["schema"] = {"type": "string", "maxLength": 40, **INSTANT_SCHEMA}
        elif (path, name) in _ENUMS:
            parameter["schema"] = {"type": "string", "enum": _ENUMS[(path, name)]}
        elif name == "resume_after":
            # An event id; a query string cannot carry null (absent is the default).
            parameter["schema"] = {"type": "string", "pattern": EVENT_ID_PATTERN}
        elif name == "cursor":
            parameter["schema"] = {"type": "string", "description": "next_cursor of a page"}


def _responses(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    statuses = [400, 401, 403, 500, 503]
    has_input = "requestBody" in operation or any(
        p.get("in") == "query" and p["name"] in ("cursor", "after", "before", "since", "until")
        for p in operation.get("parameters", [])
    )
    if "{" in path or "requestBody" in operation:
        statuses.append(404)
    if has_input or method != "get" or path in STREAMS:
        statuses.append(422)
    if (method, path) in _CONFLICTS:
        statuses.append(409)
    if "requestBody" in operation:  # every body has a limit (10 MB unless the operation's)
        statuses.append(413)
    for status in sorted(statuses):
        answer: dict[str, Any] = {
            "description": _ERRORS[status],
            "content": {problems.CONTENT_TYPE: {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
        if status == 500:
            answer["headers"] = {
                problems.REQUEST_ID_HEADER: {
                    "description": "The id of the error's log line",
                    "schema": {"type": "string"},
                }
            }
        responses[str(status)] = answer
