"""Query parameters shared by the list resources: page size, cursor, time bounds."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from litestar.exceptions import NotFoundException, ValidationException

from interlink.storage.pagination import InvalidCursor, Page, decode_cursor

MAX_LIMIT = 500
# The last second of the year 9999: the latest time Interlink takes (and can show).
MAX_EPOCH = 253402300799.0
# What the OpenAPI document says a time is (a query parameter's or a body's).
INSTANT_SCHEMA = {
    "description": "ISO 8601 with a time zone (2026-01-01T00:00:00Z), or epoch seconds",
}


def page(limit: int, cursor: str | None) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationException(f"limit must be between 1 and {MAX_LIMIT}")
    if cursor:
        try:
            decode_cursor(cursor)
        except InvalidCursor as exc:
            raise ValidationException(str(exc)) from None
    return Page(limit=limit, cursor=cursor)


def instant(name: str, value: str | None) -> float | None:
    """An ISO 8601 time (``2026-01-01T00:00:00Z``) or epoch seconds."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # Not NaN, not infinite, not past what a datetime holds: a stored time is shown again.
        if not 0 <= seconds <= MAX_EPOCH:
            raise ValidationException(
                f"{name}: epoch seconds must be between 0 and {MAX_EPOCH:.0f} (the year 9999)"
            )
        return seconds
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationException(
            f"{name} must be an ISO 8601 time or epoch seconds, not {value[:40]!r}"
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
