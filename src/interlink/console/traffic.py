"""Overview, events (search, one event with its timeline) and the live tail."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get

from interlink.api.context import ApiContext
from interlink.api.params import page
from interlink.api.schemas import EndpointHealthOut
from interlink.console.partners import QUIET, volume_word
from interlink.console.web import Login, not_found, query, render, when
from interlink.domain.models import Endpoint
from interlink.storage import timeline as timelines
from interlink.storage.console_stats import ConsoleStats
from interlink.storage.event_counts import EventCounts
from interlink.storage.event_log import EventFilter
from interlink.storage.pagination import Page

HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0
# The overview shows this many sources and endpoints (the busiest first); the lists page on.
SHOWN = 50
LIVE_ROWS = 25


async def health(ctx: ApiContext, tenant_id: str, e: Endpoint, now: float) -> EndpointHealthOut:
    """An endpoint's health as ``GET /api/v1/endpoints/{id}/health`` answers it."""
    lane = await ctx.management.endpoint_lane(tenant_id, e.id)
    load = await ctx.management.endpoint_load(tenant_id, e.id, now)
    return EndpointHealthOut.of(e, lane, load, now)


class Bar(msgspec.Struct):
    label: str
    href: str
    hour: int
    day: int
    day_pct: float  # of the largest day count shown: the bar's width
    hour_pct: float
    note: str = ""


def _bars(rows: list[tuple[str, str, int, int, str]]) -> list[Bar]:
    top = max((day for _, _, _, day, _ in rows), default=0) or 1
    rows = sorted(rows, key=lambda r: -r[3])[:SHOWN]
    return [
        Bar(label, href, hour, day, round(100 * day / top, 1), round(100 * hour / top, 1), note)
        for label, href, hour, day, note in rows
    ]


@get("/")
async def overview(
    request: Request[Any, Any, Any],
    login: Login,
    ctx: ApiContext,
    stats: ConsoleStats,
    counts: EventCounts,
) -> Response[str]:
    tenant_id, now = login.tenant_id, time.time()
    sources, _ = await ctx.management.list_sources(tenant_id, Page(limit=SHOWN))
    endpoints, _ = await ctx.management.list_endpoints(tenant_id, Page(limit=SHOWN))
    names = {s.id: s.name for s in sources}
    await counts.refresh(now)
    hour = counts.per_source(tenant_id, now - HOUR)
    day = counts.per_source(tenant_id, now - DAY)
    week = counts.per_source(tenant_id, now - WEEK)
    # Volume drops: sources that usually send and sent little or nothing this hour.
    quiet = [
        s
        for s in sources
        if volume_word(hour.get(s.id, 0), week.get(s.id, 0) / (WEEK / HOUR)) in QUIET
    ]
    inbound = _bars(
        [(names.get(s, s), f"events?source_id={s}", hour.get(s, 0), n, "") for s, n in day.items()]
    )
    out_day = await stats.deliveries_by_endpoint(tenant_id, now - DAY, now - HOUR)
    urls = {e.id: e.description or e.url or e.id for e in endpoints}
    outbound = []
    for t in out_day:
        rate = t.success_rate
        note = "" if rate is None else f"{rate:.0%} delivered"
        href = f"endpoints/{t.endpoint_id}"
        label = urls.get(t.endpoint_id, t.endpoint_id)
        outbound.append((label, href, t.recent, t.total, note))
    healths = [(e, await health(ctx, tenant_id, e, now)) for e in endpoints]
    return render(
        request,
        "overview.html",
        inbound=inbound,
        outbound=_bars(outbound),
        healths=healths,
        open_breakers=[e for e, h in healths if h.breaker != "closed"],
        disabled=[e for e, _ in healths if e.status.value != "active"],
        needs=await stats.needs(tenant_id),
        quiet=quiet,
    )


@get("/events")
async def events_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, cursor: str | None = None
) -> Response[str]:
    q = query(request, "type", "source_id", "key", "after", "before")
    where = EventFilter(
        type=q.get("type"),
        source_id=q.get("source_id"),
        key=q.get("key"),
        received_after=when("after", q.get("after")),
        received_before=when("before", q.get("before")),
    )
    items, nxt = await ctx.events.find(login.tenant_id, where, page(50, cursor))
    return render(request, "events.html", events=items, q=q, next_cursor=nxt)


@get("/events/{event_id:str}")
async def event_page(
    request: Request[Any, Any, Any], event_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    tenant_id = login.tenant_id
    event = await ctx.events.get(tenant_id, event_id)
    if event is None:
        raise not_found("event", event_id)
    found = await timelines.read_timeline(ctx.events.db, tenant_id, event_id)
    steps = [] if found is None else found.steps
    return render(
        request,
        "event.html",
        event=event,
        data=_pretty(event.data),
        raw=_pretty(event.raw),
        steps=[(type(s).__name__, s) for s in steps],
    )


def _pretty(body: bytes) -> str:
    """JSON indented for reading; anything else as text (a partner's form body, say)."""
    try:
        return msgspec.json.format(body, indent=2).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


@get("/live")
async def live_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext
) -> Response[str]:
    items, _ = await ctx.events.find(login.tenant_id, EventFilter(), Page(limit=LIVE_ROWS))
    return render(request, "live.html", events=items)


@get("/live/rows")
async def live_rows(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext
) -> Response[str]:
    """The newest events, polled by the live page (htmx, every two seconds)."""
    items, _ = await ctx.events.find(login.tenant_id, EventFilter(), Page(limit=LIVE_ROWS))
    return render(request, "_live_rows.html", events=items)
