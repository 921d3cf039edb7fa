"""Reconciliation's storage: each source's reconciler settings (with the lease that lets one
process at a time run it) and the history of its runs."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from interlink.domain.ids import new_id
from interlink.domain.reconciliation import Drift
from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.tables import reconciliation_runs, source_reconcilers, sources

_ERROR_CHARS = 1000


class ReconcilerSettings(msgspec.Struct, frozen=True):
    source_id: str
    tenant_id: str
    connection_id: str
    api_url: str
    interval_seconds: float
    enabled: bool
    next_run_at: float
    lease_until: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class Run(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    source_id: str
    trigger: str
    status: str
    since: float
    started_at: float
    finished_at: float | None
    drift: Drift
    error: str | None


def _settings(row: Any) -> ReconcilerSettings:
    return ReconcilerSettings(
        source_id=row.source_id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        api_url=row.api_url,
        interval_seconds=row.interval_seconds,
        enabled=bool(row.enabled),
        next_run_at=row.next_run_at,
        lease_until=row.lease_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_COUNTS = tuple(Drift.__struct_fields__)


def _run(row: Any) -> Run:
    return Run(
        id=row.id,
        tenant_id=row.tenant_id,
        source_id=row.source_id,
        trigger=row.trigger,
        status=row.status,
        since=row.since,
        started_at=row.started_at,
        finished_at=row.finished_at,
        drift=Drift(**{name: getattr(row, name) for name in _COUNTS}),
        error=row.error,
    )


class Reconciliations:
    def __init__(self, db: Database) -> None:
        self.db = db

    # settings ----------------------------------------------------------------------------------

    async def put(
        self,
        tenant_id: str,
        source_id: str,
        *,
        connection_id: str,
        api_url: str,
        interval_seconds: float,
        enabled: bool,
    ) -> ReconcilerSettings:
        now = time.time()
        async with self.db.write() as conn:
            values = {
                "connection_id": connection_id,
                "api_url": api_url,
                "interval_seconds": interval_seconds,
                "enabled": enabled,
                "next_run_at": now + interval_seconds,
                "updated_at": now,
            }
            # One statement, so two PUTs at once cannot both insert.
            insert = (postgresql if not self.db.is_sqlite else sqlite).insert(source_reconcilers)
            await conn.execute(
                insert.values(
                    source_id=source_id, tenant_id=tenant_id, created_at=now, **values
                ).on_conflict_do_update(
                    index_elements=["source_id"],
                    set_=values,
                    where=source_reconcilers.c.tenant_id == tenant_id,
                )
            )
        found = await self.get(tenant_id, source_id)
        assert found is not None
        return found

    async def get(self, tenant_id: str, source_id: str) -> ReconcilerSettings | None:
        query = source_reconcilers.select().where(
            source_reconcilers.c.source_id == source_id,
            source_reconcilers.c.tenant_id == tenant_id,
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _settings(row)

    async def due(self, now: float, limit: int = 50) -> list[ReconcilerSettings]:
        """Enabled reconcilers of live sources whose next run is due and that nobody runs."""
        lease = source_reconcilers.c.lease_until
        query = (
            sa.select(source_reconcilers)
            .join(sources, sources.c.id == source_reconcilers.c.source_id)
            .where(
                source_reconcilers.c.enabled.is_(True),
                source_reconcilers.c.next_run_at <= now,
                sources.c.deleted_at.is_(None),
                sa.or_(lease.is_(None), lease < now),
            )
            .order_by(source_reconcilers.c.next_run_at)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [_settings(r) for r in await conn.execute(query)]

    async def take_lease(self, source_id: str, owner: str, now: float, until: float) -> bool:
        """Whether ``owner`` now runs this source's reconciliation (until ``until``)."""
        lease = source_reconcilers.c.lease_until
        async with self.db.write() as conn:
            result = await conn.execute(
                source_reconcilers.update()
                .where(
                    source_reconcilers.c.source_id == source_id,
                    sa.or_(lease.is_(None), lease < now),
                )
                .values(lease_until=until, lease_owner=owner)
            )
        return bool(result.rowcount)

    async def release_lease(self, source_id: str, owner: str, next_run_at: float) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                source_reconcilers.update()
                .where(
                    source_reconcilers.c.source_id == source_id,
                    source_reconcilers.c.lease_owner == owner,
                )
                .values(lease_until=None, lease_owner=None, next_run_at=next_run_at)
            )

    # runs --------------------------------------------------------------------------------------

    async def start_run(self, tenant_id: str, source_id: str, trigger: str, since: float) -> Run:
        run = Run(
            id=new_id("reconciliation"),
            tenant_id=tenant_id,
            source_id=source_id,
            trigger=trigger,
            status="running",
            since=since,
            started_at=time.time(),
            finished_at=None,
            drift=Drift(),
            error=None,
        )
        async with self.db.write() as conn:
            await conn.execute(
                reconciliation_runs.insert().values(
                    id=run.id,
                    tenant_id=tenant_id,
                    source_id=source_id,
                    trigger=trigger,
                    status=run.status,
                    since=since,
                    started_at=run.started_at,
                )
            )
        return run

    async def finish_run(
        self, run: Run, drift: Drift, *, failed: bool, error: str | None = None
    ) -> Run:
        """``error``: why it failed, or else the first item it could not reconcile."""
        finished = msgspec.structs.replace(
            run,
            status="failed" if failed else "succeeded",
            finished_at=time.time(),
            drift=drift,
            error=None if error is None else error[:_ERROR_CHARS],
        )
        async with self.db.write() as conn:
            await conn.execute(
                reconciliation_runs.update()
                .where(reconciliation_runs.c.id == run.id)
                .values(
                    status=finished.status,
                    finished_at=finished.finished_at,
                    error=finished.error,
                    **msgspec.structs.asdict(drift),
                )
            )
        return finished

    async def last_succeeded(self, source_id: str) -> Run | None:
        query = (
            reconciliation_runs.select()
            .where(
                reconciliation_runs.c.source_id == source_id,
                reconciliation_runs.c.status == "succeeded",
            )
            .order_by(reconciliation_runs.c.started_at.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _run(row)

    async def runs(
        self, tenant_id: str, source_id: str, page: Page
    ) -> tuple[list[Run], str | None]:
        query = reconciliation_runs.select().where(
            reconciliation_runs.c.tenant_id == tenant_id,
            reconciliation_runs.c.source_id == source_id,
        )
        return await fetch_page(self.db, query, reconciliation_runs.c.id, page, _run)
