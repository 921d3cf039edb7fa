"""Measures what the ingest watermark watches, in the background: never on a request's path.

Each ``interval`` it reads the free space of the disk holding the event store (the SQLite
file's directory, or ``ingest_disk_path``) and the count of unsettled deliveries (bounded:
``storage/backlog.py``), and asks ``domain/watermark.assess`` whether ingest may acknowledge.
Requests only read ``breach``. A measurement that fails keeps the last verdict: a watermark
must not open or close on a transient error.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from interlink.domain.watermark import Breach, OverWatermark, WatermarkPolicy, assess
from interlink.observability.metrics import Metrics

log = structlog.get_logger("interlink.ingress")

BacklogCount = Callable[[int], Awaitable[int]]


class Watermark:
    def __init__(
        self,
        policy: WatermarkPolicy,
        disk_path: Path | None,
        backlog: BacklogCount,
        interval: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = policy
        self._disk_path = disk_path if policy.watches_disk else None
        self._backlog = backlog if policy.watches_backlog else None
        self._interval = interval
        self._metrics = metrics
        self.breach: Breach | None = None

    @property
    def active(self) -> bool:
        return self._disk_path is not None or self._backlog is not None

    def guard(self) -> None:
        """Raises ``OverWatermark`` while a watermark is tripped."""
        if self.breach is not None:
            raise OverWatermark(self.breach)

    async def measure(self) -> Breach | None:
        free = backlog = None
        try:
            if self._disk_path is not None:
                free = (await asyncio.to_thread(shutil.disk_usage, self._disk_path)).free
            if self._backlog is not None:
                # One past the limit is enough to know it is reached.
                backlog = await self._backlog(self.policy.max_backlog + 1)
        except Exception as exc:
            log.warning("ingest.watermark_unmeasured", error=repr(exc))
        before = self.breach
        self.breach = assess(self.policy, free, backlog, before)
        if (before is None) != (self.breach is None):
            if self.breach is not None:
                log.warning(
                    "ingest.watermark_tripped", reason=self.breach.reason, detail=self.breach.detail
                )
            else:
                log.info("ingest.watermark_cleared", reason=before.reason if before else None)
        if self._metrics is not None:
            self._metrics.watermark(self.breach.reason if self.breach else None)
        return self.breach

    async def run(self) -> None:
        while True:
            await self.measure()
            await asyncio.sleep(self._interval)
