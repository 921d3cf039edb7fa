"""Runs volume-drop detection (``domain/volume.py``) on what the event log received.

Every interval (a minute) it counts the events each source appended since the last count, by
log position: ``seq > last`` is a range on the primary key, so a count costs what the minute
brought, however large the log. (``received_at`` has no index, and a time-range count would
read the whole table each minute.) Reading the log rather than counting in the ingest path
also counts what every process ingested, and costs the hot path nothing.

At start-up it learns from the last week of the log, located by a binary search on ``seq`` and
read in ``seq`` ranges, so a restart does not leave it blind for the week it takes to learn.

A source's state is the gauge ``interlink_source_volume_dropped{source_id}`` and the log lines
``source.volume_dropped`` / ``source.volume_recovered``. (An operator event in the event log,
which subscriptions could route, is a follow-up.)

On a database whose ``seq`` can commit out of order (PostgreSQL sequences, several writers) a
count can miss an event that commits after the count read past its position; for a volume
estimate that is noise, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, tzinfo
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.volume import Transition, VolumeConfig, VolumeDetector
from interlink.observability.metrics import Metrics
from interlink.storage.database import Database
from interlink.storage.event_log import first_at_or_after
from interlink.storage.tables import events, sources
from interlink.storage.tenancy import system_scope

log = structlog.get_logger("interlink.volume")

BACKFILL_SECONDS = 7 * 24 * 3600.0
_BACKFILL_CHUNK = 200_000  # log positions per read while learning from history
# Counted a moment after the interval ends, so a webhook acknowledged just before the boundary
# (its commit a few milliseconds later) is counted in its own interval.
_SETTLE_DELAY = 1.0


class _SourceRow:
    __slots__ = ("created_at", "tenant_id")

    def __init__(self, tenant_id: str, created_at: float) -> None:
        self.tenant_id, self.created_at = tenant_id, created_at


class VolumeMonitor:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        config: VolumeConfig | None = None,
        *,
        tz: tzinfo = UTC,
        backfill_seconds: float = BACKFILL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self.config = config or VolumeConfig()
        self._tz = tz
        self._backfill_seconds = backfill_seconds
        self._clock = clock
        self.detector = VolumeDetector(self.config, tz)
        self._position: int | None = None  # the log position counted up to
        self._carry: dict[str, int] = {}  # counts of the interval under way at start-up
        self._last_start: float | None = None
        self._known: set[str] = set()

    def _interval_start(self, at: float) -> float:
        step = self.config.interval_seconds
        return (at // step) * step

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        # Every source of every tenant: the monitor works in the system scope, whoever calls it.
        with system_scope("volume monitor"):
            async with self._db.read() as conn:
                yield conn

    async def run(self) -> None:
        try:
            await self.start()
        except Exception:
            log.exception("volume.backfill_failed")
        while True:
            now = self._clock()
            step = self.config.interval_seconds
            await asyncio.sleep(self._interval_start(now) + step + _SETTLE_DELAY - now)
            try:
                await self.tick(self._clock())
            except Exception:
                log.exception("volume.tick_failed")

    # learning from the log's history -----------------------------------------------------

    async def start(self) -> None:
        """Learns from the last ``backfill_seconds`` of the log; sets where counting resumes."""
        now = self._clock()
        current = self._interval_start(now)
        async with self._read() as conn:
            head = int((await conn.execute(sa.select(sa.func.max(events.c.seq)))).scalar() or 0)
            source_rows = await self._sources(conn)
            first = await first_at_or_after(conn, now - self._backfill_seconds, head)
            per_minute: dict[str, dict[float, int]] = defaultdict(dict)
            if first is not None:
                lo = first - 1
                while lo < head:
                    hi = min(head, lo + _BACKFILL_CHUNK)
                    for source_id, start, n in await self._counts(conn, lo, hi):
                        minutes = per_minute[source_id]
                        minutes[start] = minutes.get(start, 0) + n
                    lo = hi
        self._position = head
        self._last_start = current
        self._carry = {s: per_minute[s].pop(current, 0) for s in per_minute}
        begin = self._interval_start(now - self._backfill_seconds)
        # Feeding a week of minutes for every source is CPU work: off the event loop, into a
        # detector nobody else sees yet.
        self.detector = await asyncio.to_thread(
            self._learn, source_rows, dict(per_minute), begin, current
        )
        self._known = set(source_rows)
        for source_id, row in source_rows.items():
            dropped = self.detector.is_dropped(source_id)
            self._metrics.set_volume_dropped(source_id, dropped)
            if dropped:  # already low when the process started: said once, as at the change
                log.warning(
                    "source.volume_dropped",
                    tenant_id=row.tenant_id,
                    source_id=source_id,
                    window_seconds=self.config.window_seconds,
                    detail="low since before this process started",
                )

    def _learn(
        self,
        source_rows: dict[str, _SourceRow],
        per_minute: dict[str, dict[float, int]],
        begin: float,
        end: float,
    ) -> VolumeDetector:
        detector = VolumeDetector(self.config, self._tz)
        step = self.config.interval_seconds
        for source_id, row in source_rows.items():
            counts = per_minute.get(source_id, {})
            at = max(begin, self._interval_start(row.created_at))
            while at < end:
                detector.observe(source_id, at, counts.get(at, 0))
                at += step
        return detector

    async def _counts(self, conn: Any, after: int, upto: int) -> list[tuple[str, float, int]]:
        step = self.config.interval_seconds
        slot: sa.ColumnElement[Any]
        if self._db.is_sqlite:  # CAST truncates; received_at is positive, so it floors
            slot = sa.cast(events.c.received_at / step, sa.Integer)
        else:  # PostgreSQL's CAST rounds
            slot = sa.func.floor(events.c.received_at / step)
        query = (
            sa.select(events.c.source_id, slot.label("slot"), sa.func.count().label("n"))
            .where(events.c.seq > after, events.c.seq <= upto)
            .group_by(events.c.source_id, slot)
        )
        return [(r.source_id, float(r.slot) * step, int(r.n)) for r in await conn.execute(query)]

    async def _sources(self, conn: Any) -> dict[str, _SourceRow]:
        rows = await conn.execute(
            sa.select(sources.c.id, sources.c.tenant_id, sources.c.created_at).where(
                sources.c.deleted_at.is_(None)
            )
        )
        return {r.id: _SourceRow(r.tenant_id, r.created_at) for r in rows}

    # every interval ----------------------------------------------------------------------

    async def tick(self, now: float) -> list[Transition]:
        """Counts the interval that ended before ``now`` and judges every source on it."""
        if self._position is None:
            await self.start()
            return []
        start = self._interval_start(now) - self.config.interval_seconds
        if self._last_start is not None and start < self._last_start:
            return []  # this interval was counted already (a clock step back)
        async with self._read() as conn:
            head = int((await conn.execute(sa.select(sa.func.max(events.c.seq)))).scalar() or 0)
            counts = await conn.execute(
                sa.select(events.c.source_id, sa.func.count().label("n"))
                .where(events.c.seq > self._position, events.c.seq <= head)
                .group_by(events.c.source_id)
            )
            per_source = {r.source_id: int(r.n) for r in counts}
            source_rows = await self._sources(conn)
        self._position = max(self._position, head)
        for source_id, n in self._carry.items():
            per_source[source_id] = per_source.get(source_id, 0) + n
        self._carry = {}
        # Intervals skipped (the loop was held up) are not made up: their events are all in this
        # count, and the detector judges no window that has a gap.
        self._last_start = start + self.config.interval_seconds
        transitions = []
        for source_id, row in source_rows.items():
            t = self.detector.observe(source_id, start, per_source.get(source_id, 0))
            self._metrics.set_volume_dropped(source_id, self.detector.is_dropped(source_id))
            if t is not None:
                transitions.append(t)
                self._log(t, row.tenant_id)
        for gone in self._known - source_rows.keys():
            self.detector.forget(gone)
            self._metrics.forget_source(gone)
        self._known = set(source_rows)
        return transitions

    def _log(self, t: Transition, tenant_id: str) -> None:
        fields = {
            "tenant_id": tenant_id,
            "source_id": t.source_id,
            "observed": t.observed,
            "expected": t.expected,
            "window_seconds": self.config.window_seconds,
        }
        if t.dropped:
            log.warning("source.volume_dropped", **fields)
        else:
            log.info("source.volume_recovered", **fields)
