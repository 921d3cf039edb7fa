"""Partners: for partnership teams, each partner source's volume against its usual level,
its quarantine rate, its last reconciliation, and the state of the connections to partner APIs.

Worded for someone who does not run Interlink: "usual" is the average hour of the last seven
days (a simple baseline from the console's counts, storage/event_counts.py, not the volume
monitor's learned one, which lives in the scheduler's process).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get

from interlink.api.context import ApiContext
from interlink.api.params import page
from interlink.console.web import Login, render
from interlink.domain.models import Source
from interlink.storage.console_stats import ConsoleStats
from interlink.storage.event_counts import EventCounts
from interlink.storage.pagination import Page
from interlink.storage.reconciliation import Run

HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0
LOW = 0.5  # under half the usual hour reads "lower than usual"


def volume_word(hour: int, usual_hour: float) -> str:
    """This hour's volume against a usual hour, in words."""
    if usual_hour < 1:
        return "new or quiet" if hour == 0 else "normal"
    if hour == 0:
        return "no events this hour"
    return "lower than usual" if hour / usual_hour < LOW else "normal"


QUIET = ("no events this hour", "lower than usual")


class PartnerRow(msgspec.Struct):
    source: Source
    hour: int
    usual_hour: float
    day: int
    quarantined_day: int
    last_run: Run | None

    @property
    def volume(self) -> str:
        return volume_word(self.hour, self.usual_hour)

    @property
    def quarantine_rate(self) -> float | None:
        return None if self.day == 0 else self.quarantined_day / self.day


async def _last_run(ctx: ApiContext, tenant_id: str, source_id: str) -> Run | None:
    if ctx.reconciliation is None:
        return None
    runs, _ = await ctx.reconciliation.store.runs(tenant_id, source_id, Page(limit=1))
    return runs[0] if runs else None


@get("/partners")
async def partners_page(
    request: Request[Any, Any, Any],
    login: Login,
    ctx: ApiContext,
    stats: ConsoleStats,
    counts: EventCounts,
    cursor: str | None = None,
) -> Response[str]:
    tenant_id, now = login.tenant_id, time.time()
    sources, nxt = await ctx.management.list_sources(tenant_id, page(50, cursor))
    await counts.refresh(now)
    hour = counts.per_source(tenant_id, now - HOUR)
    day = counts.per_source(tenant_id, now - DAY)
    week = counts.per_source(tenant_id, now - WEEK)
    held = await stats.quarantined_by_source(tenant_id, now - DAY)
    rows = [
        PartnerRow(
            source=s,
            hour=hour.get(s.id, 0),
            usual_hour=week.get(s.id, 0) / (WEEK / HOUR),
            day=day.get(s.id, 0),
            quarantined_day=held.get(s.id, 0),
            last_run=await _last_run(ctx, tenant_id, s.id),
        )
        for s in sources
    ]
    connections = []
    if ctx.tokens is not None:
        found, _ = await ctx.tokens.connections.list_connections(tenant_id, Page(limit=50))
        connections = [(c, c.status(now).value) for c in found]
    return render(request, "partners.html", rows=rows, connections=connections, next_cursor=nxt)
