"""Partition maintenance and retention: days made ahead, old days dropped, never a long lock.

Run by the scheduler role (``app.py``) every ``maintenance_interval_seconds`` and by
``interlink maintenance run``.

PostgreSQL (storage/partitions.py): each pass tops the daily partitions of ``events`` and
``attempts`` up to ``AHEAD_DAYS`` ahead, then, with a retention set, drops each partition wholly
older than it: ``DETACH PARTITION … CONCURRENTLY`` (it waits for the queries that may see the
partition and blocks none), then the deliveries (with their attempts) of its events, then
``DROP TABLE``. An events partition is kept while any of its events has a live (pending,
scheduled, in-flight) delivery or lies beyond a log cursor (not routed or normalized yet): those
are never dropped. Attempts partitions go by their own time. The ingest dedupe keys of a
dropped partition's events go with them, so a key is forgotten exactly with its event. DDL runs
as the schema's owner (``migration_database_url``): the application role owns no table. A pass
that was stopped half-way (a detach pending, a partition detached but not dropped) is finished by
the next one.

SQLite (no partitions): the prefix of the log older than the retention is deleted in bounded
batches (``batch`` events a transaction, each with its terminal deliveries and their attempts),
skipping events with a live delivery, stopping at the first event a cursor has not passed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.storage import partitions, rls
from interlink.storage.database import Database, normalize_url
from interlink.storage.partitions import Partition
from interlink.storage.tables import attempts, cursors, deliveries, events, idempotency_keys
from interlink.storage.tenancy import system_scope

log = structlog.get_logger("interlink.maintenance")

# One maintenance pass at a time across processes (session advisory lock; any constant).
MAINTENANCE_LOCK = 0x1A7E_0011
LIVE = ("pending", "scheduled", "in_flight")
# How long a partition's DDL waits for a lock before giving up until the next pass: a waiting
# ACCESS EXCLUSIVE request would queue every later query of the table behind it.
LOCK_TIMEOUT = "2s"
# Statuses as constants: the partial index of live deliveries (ix_deliveries_due_active) serves
# only a query that names them so, not as parameters of a prepared statement.
_LIVE_IN_RANGE = sa.text(
    f"SELECT 1 FROM deliveries WHERE status IN ({', '.join(repr(s) for s in LIVE)})"  # noqa: S608 - LIVE's constants
    " AND event_seq BETWEEN :lo AND :hi LIMIT 1"
)


def _events_partition(name: str) -> sa.TableClause:
    columns = ("seq", "id", "source_id", "idempotency_key")
    return sa.table(name, *[sa.column(c) for c in columns])


@dataclass
class Report:
    created: list[str] = field(default_factory=list)  # partitions made ahead
    dropped: list[str] = field(default_factory=list)  # partitions dropped
    kept: list[tuple[str, str]] = field(default_factory=list)  # (partition, why) past retention
    rows: dict[str, int] = field(default_factory=dict)  # rows deleted, by table
    skipped: bool = False  # another process was running a pass

    def count(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n


Dropped = Callable[[str, str, int], None]  # (table, unit: 'partition' | 'row', how many)


def owner_database(db: Database, migration_url: str) -> Database | None:
    """The schema owner's database for the DDL (PostgreSQL, when the owner is another role
    than the application's); None: the application's own will do."""
    if db.is_sqlite or normalize_url(migration_url) == db.url:
        return None
    return Database(migration_url, pool_size=2)  # the pass's DDL connection and one more


class Maintenance:
    def __init__(
        self,
        db: Database,
        owner: Database | None = None,
        *,
        retention_days: float | None = None,
        interval_seconds: float = 3600.0,
        batch: int = 1000,
        on_dropped: Dropped | None = None,
    ) -> None:
        """``db``: the application's database; ``owner``: the same database as the schema's
        owner, for DDL (PostgreSQL; None: ``db``)."""
        self.db = db
        self.owner = owner or db
        self.retention_days = retention_days
        self.interval_seconds = interval_seconds
        self.batch = batch
        self._on_dropped = on_dropped or (lambda _t, _u, _n: None)

    async def close(self) -> None:
        if self.owner is not self.db:
            await self.owner.close()

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("maintenance.failed")
            await asyncio.sleep(self.interval_seconds)

    def cutoff(self, now: float) -> float | None:
        return None if self.retention_days is None else now - self.retention_days * partitions.DAY

    async def run_once(self, now: float | None = None) -> Report:
        with system_scope("maintenance: partitions and retention"):
            return await self._run_once(time.time() if now is None else now)

    async def _run_once(self, now: float) -> Report:
        report = Report()
        if self.db.is_sqlite:
            cutoff = self.cutoff(now)
            if cutoff is not None:
                await self._delete_prefix(cutoff, report)
        else:
            await self._partitions(now, report)
        for table, n in report.rows.items():
            self._on_dropped(table, "row", n)
        if report.created or report.dropped or report.rows or report.kept:
            log.info(
                "maintenance.done",
                created=report.created,
                dropped=report.dropped,
                kept=[f"{name}: {why}" for name, why in report.kept],
                rows=report.rows,
            )
        return report

    # PostgreSQL ---------------------------------------------------------------------------------

    async def _partitions(self, now: float, report: Report) -> None:
        async with self.owner.engine.connect() as raw:
            ddl = await raw.execution_options(isolation_level="AUTOCOMMIT")
            # Each statement on this connection is a transaction of its own: the scope is the
            # session's (the connection is discarded after the pass, below).
            await ddl.execute(sa.text(rls.SYSTEM_SESSION))
            locked = await ddl.scalar(sa.select(sa.func.pg_try_advisory_lock(MAINTENANCE_LOCK)))
            if not locked:
                report.skipped = True
                return
            try:
                for table in partitions.PARTITIONED:
                    await self._finish_interrupted(ddl, table, report)
                    await self._extend(table, now, report)
                    cutoff = self.cutoff(now)
                    if cutoff is not None:
                        await self._retire(ddl, table, cutoff, report)
            finally:
                await ddl.execute(sa.select(sa.func.pg_advisory_unlock(MAINTENANCE_LOCK)))
                await raw.invalidate()  # not back to the pool with its session settings

    async def layout(self, table: str) -> list[Partition]:
        async with self.owner.read() as conn:
            rows = (await conn.execute(sa.text(partitions.LAYOUT), {"table": table})).all()
        out = []
        for r in rows:
            lower, upper = partitions.parse_bound(r.bound)
            out.append(Partition(r.name, lower, upper, r.detach_pending))
        return sorted(out, key=lambda p: p.lower)

    async def _finish_interrupted(self, ddl: AsyncConnection, table: str, report: Report) -> None:
        for p in await self.layout(table):
            if p.detach_pending:
                await ddl.execute(
                    sa.text(f"ALTER TABLE {table} DETACH PARTITION {p.name} FINALIZE")
                )
        found = await ddl.execute(
            sa.text(partitions.DETACHED),
            {
                "pattern": partitions.detached_pattern(table),
                "history": partitions.history_name(table),
            },
        )
        for (name,) in found.all():
            await self._drop_detached(ddl, table, name, report)

    async def _extend(self, table: str, now: float, report: Report) -> None:
        future = next(p for p in await self.layout(table) if p.upper == math.inf)
        horizon = partitions.day_start(now) + (partitions.AHEAD_DAYS + 1) * partitions.DAY
        if future.lower >= horizon:
            return
        async with self.owner.write() as conn:
            await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            for statement in partitions.extend_statements(table, future.lower, horizon):
                await conn.execute(sa.text(statement))
        days = partitions.days_between(future.lower, horizon)
        report.created += [partitions.day_name(table, d) for d in days]

    async def _retire(
        self, ddl: AsyncConnection, table: str, cutoff: float, report: Report
    ) -> None:
        for p in await self.layout(table):
            if p.upper > cutoff or p.upper == math.inf:
                break
            if table == "events":
                why = await self._held(p.name)
                if why:
                    report.kept.append((p.name, why))
                    continue
            await ddl.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            try:
                await ddl.execute(
                    sa.text(f"ALTER TABLE {table} DETACH PARTITION {p.name} CONCURRENTLY")
                )
            finally:
                await ddl.execute(sa.text("RESET lock_timeout"))
            await self._drop_detached(ddl, table, p.name, report)

    async def _held(self, partition: str) -> str | None:
        """Why an events partition must stay, or None."""
        async with self.owner.read() as conn:
            part = _events_partition(partition)
            lo, hi = (
                await conn.execute(sa.select(sa.func.min(part.c.seq), sa.func.max(part.c.seq)))
            ).one()
            if lo is None:
                return None
            cursor = await conn.scalar(sa.select(sa.func.min(cursors.c.position)))
            if hi > (cursor or 0):
                return "events a log cursor has not passed"
            live = await conn.scalar(_LIVE_IN_RANGE, {"lo": lo, "hi": hi})
        return "events with live deliveries" if live else None

    async def _drop_detached(
        self, ddl: AsyncConnection, table: str, name: str, report: Report
    ) -> None:
        if table == "events":
            await self._purge_deliveries(name, report)
        rows = await ddl.scalar(sa.select(sa.func.count()).select_from(sa.table(name)))
        await ddl.execute(sa.text(f"DROP TABLE {name}"))
        report.dropped.append(name)
        report.count(table, int(rows or 0))
        self._on_dropped(table, "partition", 1)

    async def _purge_deliveries(self, partition: str, report: Report) -> None:
        """The deliveries of a detached partition's events, with their attempts, and the
        events' dedupe keys, in batches by the partition's own ``seq`` index."""
        after = 0
        part = _events_partition(partition)
        while True:
            async with self.owner.write() as conn:
                page = part.select().where(part.c.seq > after).order_by(part.c.seq)
                rows = (await conn.execute(page.limit(self.batch))).all()
                if not rows:
                    return
                after = rows[-1].seq
                await self._delete_deliveries(conn, [r.id for r in rows], report)
                key = sa.tuple_(idempotency_keys.c.source_id, idempotency_keys.c.idempotency_key)
                gone = await conn.execute(
                    idempotency_keys.delete().where(
                        key.in_([(r.source_id, r.idempotency_key) for r in rows])
                    )
                )
                report.count("idempotency_keys", gone.rowcount)

    async def _delete_deliveries(
        self, conn: AsyncConnection, event_ids: Sequence[str], report: Report
    ) -> None:
        gone = (
            (
                await conn.execute(
                    deliveries.delete()
                    .where(deliveries.c.event_id.in_(list(event_ids)))
                    .returning(deliveries.c.id)
                )
            )
            .scalars()
            .all()
        )
        if gone:
            result = await conn.execute(attempts.delete().where(attempts.c.delivery_id.in_(gone)))
            report.count("attempts", result.rowcount)
        report.count("deliveries", len(gone))

    # SQLite ---------------------------------------------------------------------------------------

    async def _delete_prefix(self, cutoff: float, report: Report) -> None:
        after = 0
        while True:
            async with self.db.write() as conn:
                done, after = await self._delete_batch(conn, cutoff, after, report)
            if done:
                return

    async def _delete_batch(
        self, conn: AsyncConnection, cutoff: float, after: int, report: Report
    ) -> tuple[bool, int]:
        cursor = await conn.scalar(sa.select(sa.func.min(cursors.c.position))) or 0
        rows = (
            await conn.execute(
                sa.select(events.c.seq, events.c.id, events.c.received_at)
                .where(events.c.seq > after)
                .order_by(events.c.seq)
                .limit(self.batch)
            )
        ).all()
        old: list[Any] = []
        for r in rows:
            if r.received_at >= cutoff or r.seq > cursor:
                break
            old.append(r)
        if not old:
            return True, after
        ids = [r.id for r in old]
        live = set(
            (
                await conn.execute(
                    sa.select(deliveries.c.event_id).where(
                        deliveries.c.event_id.in_(ids), deliveries.c.status.in_(LIVE)
                    )
                )
            ).scalars()
        )
        gone = [i for i in ids if i not in live]
        if gone:
            await self._delete_deliveries(conn, gone, report)
            result = await conn.execute(events.delete().where(events.c.id.in_(gone)))
            report.count("events", result.rowcount)
        return len(old) < len(rows) or len(rows) < self.batch, old[-1].seq
