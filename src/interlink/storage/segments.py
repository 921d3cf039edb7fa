"""A tenant's segments: named CEL predicates its subscriptions' filters refer to.

A filter is stored as written (``segment("name")`` unexpanded) and expanded when compiled, so
changing a segment re-targets every filter naming it: each change bumps the management's
``routing_version``, which drops the router's cache in this process (other processes within
its TTL).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from interlink.domain.filters import segment_names
from interlink.domain.ids import new_id
from interlink.domain.models import Segment
from interlink.storage.management import Management
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.tables import segments, subscriptions


class SegmentExists(Exception):
    """The tenant has a segment of that name already."""


def _segment(row: Any) -> Segment:
    return Segment(
        row.id,
        row.tenant_id,
        row.name,
        row.expression,
        row.description,
        row.created_at,
        row.updated_at,
    )


class Segments:
    def __init__(self, management: Management) -> None:
        self._management = management
        self.db = management.db

    def _changed(self) -> None:
        self._management.routing_version += 1

    async def create(self, tenant_id: str, name: str, expression: str, description: str) -> Segment:
        now = time.time()
        seg = Segment(new_id("segment"), tenant_id, name, expression, description, now, now)
        if await self.get(tenant_id, name) is not None:
            raise SegmentExists(name)
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    segments.insert().values(
                        id=seg.id,
                        tenant_id=tenant_id,
                        name=name,
                        expression=expression,
                        description=description,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise SegmentExists(name) from None  # a concurrent create of the same name won
        self._changed()
        return seg

    async def get(self, tenant_id: str, name: str) -> Segment | None:
        query = segments.select().where(segments.c.tenant_id == tenant_id, segments.c.name == name)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _segment(row)

    async def page(self, tenant_id: str, page: Page) -> tuple[list[Segment], str | None]:
        query = segments.select().where(segments.c.tenant_id == tenant_id)
        return await fetch_page(self.db, query, segments.c.id, page, _segment)

    async def update(
        self, tenant_id: str, name: str, expression: str | None, description: str | None
    ) -> Segment | None:
        values: dict[str, object] = {"updated_at": time.time()}
        if expression is not None:
            values["expression"] = expression
        if description is not None:
            values["description"] = description
        async with self.db.write() as conn:
            await conn.execute(
                segments.update()
                .where(segments.c.tenant_id == tenant_id, segments.c.name == name)
                .values(**values)
            )
        self._changed()
        return await self.get(tenant_id, name)

    async def delete(self, tenant_id: str, name: str) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                segments.delete().where(segments.c.tenant_id == tenant_id, segments.c.name == name)
            )
        self._changed()
        return bool(result.rowcount)

    async def users(self, tenant_id: str, name: str) -> list[str]:
        """The live subscriptions whose filter names the segment, by id."""
        query = sa.select(subscriptions.c.id, subscriptions.c.filter).where(
            subscriptions.c.tenant_id == tenant_id,
            subscriptions.c.deleted_at.is_(None),
            subscriptions.c.filter.is_not(None),
            subscriptions.c.filter.contains(f"{name}", autoescape=True),
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return sorted(r.id for r in rows if name in segment_names(r.filter))

    async def bodies(self, tenant_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each tenant's segments, name → expression (for compiling filters)."""
        query = sa.select(segments.c.tenant_id, segments.c.name, segments.c.expression).where(
            segments.c.tenant_id.in_(list(tenant_ids))
        )
        out: dict[str, dict[str, str]] = {t: {} for t in tenant_ids}
        async with self.db.read() as conn:
            for r in await conn.execute(query):
                out[r.tenant_id][r.name] = r.expression
        return out
