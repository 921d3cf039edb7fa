"""A tenant's events in a time window, with their deliveries and attempts, page by page.

The export reads in event-id order after a cursor (the last event id written), so it can stop
anywhere and resume exactly there, and a page is all it holds: the memory an export needs does
not grow with the window. Ids are time-ordered (UUIDv7) and minted no earlier than an event's
``received_at``, so the window's start is also a floor on ids: the read seeks there through
``(tenant_id, id)`` instead of walking the tenant's older events.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.models import Event
from interlink.storage.database import Database
from interlink.storage.deliveries import (
    Attempt,
    Delivery,
    attempt_from_row,
    delivery_from_row,
)
from interlink.storage.event_log import event_from_row
from interlink.storage.sqlite.driver import CACHE_KIB
from interlink.storage.tables import attempts, deliveries, events

PAGE = 500
_EXPORT_CACHE_KIB = 2048
# A clock step between minting an id and reading the time: the floor is taken this much lower.
_FLOOR_MARGIN_MS = 60_000


class ExportedDelivery(msgspec.Struct, frozen=True):
    delivery: Delivery
    attempts: list[Attempt]


class Exported(msgspec.Struct, frozen=True):
    event: Event
    deliveries: list[ExportedDelivery]


def id_floor(since: float) -> str:
    """The lowest event id that can have been minted at or after ``since`` (epoch seconds)."""
    millis = max(0, int(since * 1000) - _FLOOR_MARGIN_MS)
    return f"evt_{millis:012x}" + "0" * 20


async def exported(
    db: Database,
    tenant_id: str,
    since: float,
    until: float,
    after: str | None = None,
    page: int = PAGE,
) -> AsyncIterator[list[Exported]]:
    """Pages of the tenant's events received in [since, until), after the event id ``after``."""
    cursor = max(after or "", id_floor(since))
    while True:
        batch = await _page(db, tenant_id, since, until, cursor, page)
        if batch:
            yield batch
        if len(batch) < page:
            return
        cursor = batch[-1].event.id


async def _page(
    db: Database, tenant_id: str, since: float, until: float, after: str, limit: int
) -> list[Exported]:
    query = (
        events.select()
        .where(
            events.c.tenant_id == tenant_id,
            events.c.id > after,
            events.c.received_at >= since,
            events.c.received_at < until,
        )
        .order_by(events.c.id)
        .limit(limit)
    )
    async with db.read() as conn, _small_cache(conn, db.is_sqlite):
        rows = (await conn.execute(query)).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        owed = (
            await conn.execute(
                deliveries.select()
                .where(deliveries.c.tenant_id == tenant_id, deliveries.c.event_id.in_(ids))
                .order_by(deliveries.c.id)
            )
        ).all()
        tried = (
            (
                await conn.execute(
                    attempts.select()
                    .where(
                        attempts.c.tenant_id == tenant_id,
                        attempts.c.delivery_id.in_([d.id for d in owed]),
                    )
                    .order_by(attempts.c.delivery_id, attempts.c.number)
                )
            ).all()
            if owed
            else []
        )
    return _assemble(rows, owed, tried)


@contextlib.asynccontextmanager
async def _small_cache(conn: AsyncConnection, sqlite: bool) -> AsyncIterator[None]:
    """On SQLite, a page of an export reads with a small page cache, then gives the usual size
    back: the pages of a whole export would otherwise settle in the caches of every pooled
    connection it went through (64 MiB each), memory that grows with the export, not its page.
    Lowering the size frees the pages over it at once."""
    if not sqlite:
        yield
        return
    await conn.exec_driver_sql(f"PRAGMA cache_size=-{_EXPORT_CACHE_KIB}")
    try:
        yield
    finally:
        await conn.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")


def _assemble(rows: Sequence[Any], owed: Sequence[Any], tried: Sequence[Any]) -> list[Exported]:
    by_delivery: dict[str, list[Attempt]] = {}
    for a in tried:
        attempt = attempt_from_row(a)
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    by_event: dict[str, list[ExportedDelivery]] = {}
    for d in owed:
        delivery = delivery_from_row(d)
        by_event.setdefault(delivery.event_id, []).append(
            ExportedDelivery(delivery, by_delivery.get(delivery.id, []))
        )
    return [Exported(event_from_row(r), by_event.get(r.id, [])) for r in rows]
