"""Cursor pagination over time-ordered ids: newest first, the cursor is the last id seen."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
import sqlalchemy as sa

if TYPE_CHECKING:
    from interlink.storage.database import Database


class InvalidCursor(ValueError):
    pass


class Page(msgspec.Struct):
    limit: int = 50
    cursor: str | None = None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("the cursor is not one this API returned") from None
    if not value or len(value) > 64:
        raise InvalidCursor("the cursor is not one this API returned")
    return value


def paginate(query: sa.Select[Any], id_column: sa.ColumnElement[Any], page: Page) -> sa.Select[Any]:
    """Fetches one row more than the page, so the caller knows whether there is a next page."""
    if page.cursor:
        query = query.where(id_column < decode_cursor(page.cursor))
    return query.order_by(id_column.desc()).limit(page.limit + 1)


def next_cursor(rows: Sequence[Any], page: Page, last_id: str | None) -> str | None:
    return encode_cursor(last_id) if len(rows) > page.limit and last_id else None


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


async def fetch_page(
    db: Database,
    query: sa.Select[Any],
    id_column: sa.ColumnElement[Any],
    page: Page,
    convert: Callable[[Any], T],
) -> tuple[list[T], str | None]:
    """One page of ``query``, newest first, and the cursor of the next page (or None)."""
    async with db.read() as conn:
        rows = (await conn.execute(paginate(query, id_column, page))).all()
    items = [convert(r) for r in rows[: page.limit]]
    return items, next_cursor(rows, page, items[-1].id if items else None)
