"""Query parameters shared by the list resources: page size, cursor, time bounds."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler

from interlink.storage.pagination import InvalidCursor, Page, decode_cursor

MAX_LIMIT = 500


class Unprocessable(ClientException):
    """A request the OpenAPI document allows, refused by a rule the document cannot state: a URL
    that resolves to a private address, an unknown verifier, 'after' later than 'before', a
    cursor this API never returned. A request that breaks the document itself is a 400."""

    status_code = 422


# The last second of the year 9999: the latest time Interlink takes (and can show).
MAX_EPOCH = 253402300799.0
# Epoch seconds as a query parameter (or a string in a body): up to 11 digits, so within the years
# 1970 to 5138.
EVENT_ID_PATTERN = r"^evt_[0-9a-f]{32}$"
EPOCH_PATTERN = r"^[0-9]{1,11}(\.[0-9]{1,20})?$"
# What the OpenAPI document says a time given as a string is: what ``instant`` takes.
INSTANT_SCHEMA: dict[str, Any] = {
    "description": "RFC 3339 with a time zone (2026-01-01T00:00:00Z), or epoch seconds",
    "anyOf": [{"format": "date-time"}, {"pattern": EPOCH_PATTERN}],
}


def known_query(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A guard: a query parameter the operation does not take is refused, not ignored (a typo in
    a filter, ``?staus=dead``, would otherwise answer with everything)."""
    taken = handler.parsed_fn_signature.parameters
    unknown = sorted(name for name in connection.query_params if name not in taken)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ValidationException(f"unknown query parameter {shown}; see /openapi.json")


def page(limit: int, cursor: str | None) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationException(f"limit must be between 1 and {MAX_LIMIT}")
    if cursor:
        try:
            decode_cursor(cursor)
        except InvalidCursor as exc:
            raise Unprocessable(str(exc)) from None
    return Page(limit=limit, cursor=cursor)


def instant(name: str, value: str | None) -> float | None:
    """An RFC 3339 time (``2026-01-01T00:00:00Z``) or epoch seconds (``EPOCH_PATTERN``)."""
    if value is None or value == "":
        return None
    if re.fullmatch(EPOCH_PATTERN, value):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationException(
            f"{name} must be an ISO 8601 time or epoch seconds (at most 11 digits), "
            f"not {value[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationException(f"{name} needs a time zone, e.g. 'Z'")
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):  # the year 1 or 9999 and a zone that leaves them
        raise ValidationException(f"{name} is outside the years 1 to 9999") from None


T = TypeVar("T")


def found(value: T | None, kind: str, ident: str) -> T:
    """The resource, or a 404 that names what was not found (another tenant's is not found)."""
    if value is None:
        raise NotFoundException(f"no {kind} '{ident}'")
    return value
