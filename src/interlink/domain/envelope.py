"""Reads the partner's event id, type, key and data out of a parsed payload."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime

import msgspec

from interlink.domain.models import Envelope
from interlink.domain.patterns import InvalidPattern, validate_event_type

MAX_IDEMPOTENCY_KEY = 255
MAX_KEY = 255
# Identifiers, not text: no control characters (PostgreSQL text cannot even hold NUL).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EnvelopeError(ValueError):
    """The payload lacks what the source's envelope says it carries."""


class Extracted(msgspec.Struct, frozen=True):
    idempotency_key: str
    type: str
    key: str | None
    occurred_at: float | None
    data: bytes


_MISSING = object()


def lookup(payload: object, path: str) -> object:
    node = payload
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _scalar(value: object) -> str | None:
    if isinstance(value, bool) or value is None or value is _MISSING:
        return None
    if isinstance(value, str | int | float):
        text = str(value)
        return text if text else None
    return None


def _occurred_at(payload: object) -> float | None:
    value = lookup(payload, "timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def check_identifier(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise EnvelopeError(f"the {what} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise EnvelopeError(f"the {what} contains a control character")


def extract(
    payload: object, body: bytes, headers: Mapping[str, str], envelope: Envelope
) -> Extracted:
    kind, _, where = envelope.id_from.partition(":")
    partner_id: str | None = None
    if kind == "header":
        partner_id = headers.get(where.lower()) or None
    elif kind == "json":
        partner_id = _scalar(lookup(payload, where))
    if partner_id is not None:
        check_identifier("event id", partner_id, MAX_IDEMPOTENCY_KEY)
    idempotency_key = partner_id or "sha256:" + hashlib.sha256(body).hexdigest()

    event_type = _scalar(lookup(payload, envelope.type_path)) or envelope.default_type
    if event_type is None:
        raise EnvelopeError(f"the payload has no event type at '{envelope.type_path}'")
    try:
        validate_event_type(event_type, partner=True)
    except InvalidPattern as exc:
        raise EnvelopeError(str(exc)) from None

    key = _scalar(lookup(payload, envelope.key_path)) if envelope.key_path else None
    if key is not None:
        check_identifier("ordering key", key, MAX_KEY)

    data_node: object = payload
    if envelope.data_path:
        found = lookup(payload, envelope.data_path)
        if found is not _MISSING:
            data_node = found
    data = body if data_node is payload else msgspec.json.encode(data_node)
    return Extracted(idempotency_key, event_type, key, _occurred_at(payload), data)
