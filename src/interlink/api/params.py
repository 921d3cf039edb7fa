"""Query parameters shared by the list resources: page size, cursor, time bounds."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from litestar.exceptions import NotFoundException, ValidationException

from interlink.storage.pagination import InvalidCursor, Page, decode_cursor

MAX_LIMIT = 500


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
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationException(
            f"{name} must be an ISO 8601 time or epoch seconds, not {value[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationException(f"{name} needs a time zone, e.g. 'Z'")
    return parsed.timestamp()


T = TypeVar("T")


def found(value: T | None, kind: str, ident: str) -> T:
    """The resource, or a 404 that names what was not found (another tenant's is not found)."""
    if value is None:
        raise NotFoundException(f"no {kind} '{ident}'")
    return value
