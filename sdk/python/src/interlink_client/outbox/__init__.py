"""The transactional outbox: publish an event in the same transaction as the business write
that causes it, and let a relay (``interlink-outbox relay``) ship it to Interlink once committed.

An event is a row of ``interlink_outbox`` in the service's own database (PostgreSQL or SQLite,
through SQLAlchemy). It exists exactly when the transaction that wrote it commits; the relay
ships committed rows in order per key to the batch publish API, with a stable idempotency key
(``outbox-<row id>``, or the caller's), so a relay killed between shipping and marking a row
sent ships it again and Interlink answers it as a duplicate: each event is stored once.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from interlink_client.outbox.table import CHANNEL, create_table, ddl, metadata, outbox

__all__ = ["CHANNEL", "create_table", "ddl", "metadata", "outbox", "publish", "publish_async"]

Executor = sa.Connection | Session
AsyncExecutor = AsyncConnection | AsyncSession


def _insert(
    type: str,
    data: dict[str, Any],
    key: str | None,
    idempotency_key: str | None,
    occurred_at: float | None,
) -> sa.Insert:
    return outbox.insert().values(
        event_type=type,
        data=msgspec.json.encode(data).decode(),
        event_key=key,
        idempotency_key=idempotency_key,
        # When the business write happened, not when the relay got to it.
        occurred_at=time.time() if occurred_at is None else occurred_at,
    )


# Wakes the relays' LISTEN on PostgreSQL; delivered only if, and when, the transaction commits
# (and several in one transaction are folded into one).
_NOTIFY = sa.select(sa.func.pg_notify(CHANNEL, ""))


def _dialect(conn: Executor | AsyncExecutor) -> str:
    if isinstance(conn, Session | AsyncSession):
        return conn.get_bind().dialect.name
    return conn.dialect.name


def publish(
    conn: Executor,
    type: str,
    data: dict[str, Any],
    *,
    key: str | None = None,
    idempotency_key: str | None = None,
    occurred_at: float | None = None,
) -> None:
    """Adds an event to the outbox in ``conn``'s transaction (a SQLAlchemy ``Connection`` or
    ``Session``): it is shipped if, and only if, that transaction commits. ``key`` orders (a
    key's events reach Interlink in commit order); ``idempotency_key`` defaults to the row's
    id (``outbox-<id>``)."""
    conn.execute(_insert(type, data, key, idempotency_key, occurred_at))
    if _dialect(conn) == "postgresql":
        conn.execute(_NOTIFY)


async def publish_async(
    conn: AsyncExecutor,
    type: str,
    data: dict[str, Any],
    *,
    key: str | None = None,
    idempotency_key: str | None = None,
    occurred_at: float | None = None,
) -> None:
    """:func:`publish` for an ``AsyncConnection`` or ``AsyncSession``."""
    await conn.execute(_insert(type, data, key, idempotency_key, occurred_at))
    if _dialect(conn) == "postgresql":
        await conn.execute(_NOTIFY)
