"""The quarantine: what could not be normalized, or would make an illegal transition, kept with
the reason until it is reprocessed (or, when held, released by a later event)."""

from __future__ import annotations

from typing import Any

import msgspec

from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.tables import quarantine


class QuarantineEntry(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    source_id: str
    event_id: str  # the partner's event, as received
    event_index: int | None  # which of its canonical events; None: the whole event
    stage: str
    reason: str
    kit: str | None
    kit_version: str | None
    entity: str | None
    entity_key: str | None
    canonical: dict[str, Any] | None  # the canonical event held back
    created_at: float
    resolved_at: float | None = None
    resolution: str | None = None


class QuarantineFilter(msgspec.Struct, frozen=True):
    status: str | None = None  # "open" | "resolved"; None: both
    stage: str | None = None
    source_id: str | None = None
    event_id: str | None = None


def entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(
        id=row.id,
        tenant_id=row.tenant_id,
        source_id=row.source_id,
        event_id=row.event_id,
        event_index=row.event_index,
        stage=row.stage,
        reason=row.reason,
        kit=row.kit,
        kit_version=row.kit_version,
        entity=row.entity,
        entity_key=row.entity_key,
        canonical=dict(row.canonical) if row.canonical is not None else None,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        resolution=row.resolution,
    )


def entry_row(e: QuarantineEntry) -> dict[str, Any]:
    return msgspec.structs.asdict(e)


class Quarantine:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, tenant_id: str, entry_id: str) -> QuarantineEntry | None:
        query = quarantine.select().where(
            quarantine.c.id == entry_id, quarantine.c.tenant_id == tenant_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else entry(row)

    async def find(
        self, tenant_id: str, where: QuarantineFilter, page: Page
    ) -> tuple[list[QuarantineEntry], str | None]:
        query = quarantine.select().where(quarantine.c.tenant_id == tenant_id)
        if where.status == "open":
            query = query.where(quarantine.c.resolved_at.is_(None))
        elif where.status == "resolved":
            query = query.where(quarantine.c.resolved_at.is_not(None))
        if where.stage:
            query = query.where(quarantine.c.stage == where.stage)
        if where.source_id:
            query = query.where(quarantine.c.source_id == where.source_id)
        if where.event_id:
            query = query.where(quarantine.c.event_id == where.event_id)
        return await fetch_page(self.db, query, quarantine.c.id, page, entry)
