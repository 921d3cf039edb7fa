"""``GET /api/v1/export``: a tenant's events in a window, with deliveries and attempts, as NDJSON.

One line per event, in event-id order, streamed page by page (storage/export.py): the memory
an export takes does not grow with the window. ``resume_after`` resumes after the last event id a
client wrote, so an interrupted export continues where it stopped (``interlink export``
does that with a partial file).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import get
from litestar.exceptions import ClientException, ValidationException
from litestar.params import Parameter
from litestar.response import Stream

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import EVENT_ID_PATTERN, instant
from interlink.api.schemas import AttemptOut, DeliveryOut, EventOut
from interlink.api.traffic import event_out
from interlink.storage.export import Exported

NDJSON = "application/x-ndjson"


class ExportedDeliveryOut(msgspec.Struct):
    delivery: DeliveryOut
    attempts: list[AttemptOut]


class ExportLine(msgspec.Struct):
    """One line of an export."""

    event: EventOut
    deliveries: list[ExportedDeliveryOut]


def line(item: Exported) -> ExportLine:
    return ExportLine(
        event_out(item.event),
        [
            ExportedDeliveryOut(DeliveryOut.of(d.delivery), [AttemptOut.of(a) for a in d.attempts])
            for d in item.deliveries
        ],
    )


@get(
    "/api/v1/export",
    tags=["events"],
    summary="Export events received in a window, with their deliveries and attempts (NDJSON)",
    description=(
        "application/x-ndjson: one ExportLine (an event, its deliveries, each with its "
        "attempts) a line, in event-id order. `since` and `until` bound the events' receipt "
        "(RFC 3339 or epoch seconds; `until` defaults to now). An export that stopped resumes "
        "with `resume_after` = the last event id it wrote."
    ),
    media_type=NDJSON,
)
async def export_events(
    principal: Principal,
    ctx: ApiContext,
    since: Annotated[str, Parameter(description="Events received at or after this time")],
    until: Annotated[
        str | None, Parameter(description="Events received before this time (default: now)")
    ] = None,
    resume_after: Annotated[
        str | None, Parameter(pattern=EVENT_ID_PATTERN, description="Resume after this event id")
    ] = None,
) -> Stream:
    tenant_id = require_tenant(principal)
    start = instant("since", since)
    if start is None:
        raise ValidationException("since is required: an RFC 3339 time or epoch seconds")
    end = instant("until", until) or time.time()
    if end <= start:
        raise ClientException(f"until ({until}) must be after since ({since})", status_code=422)
    if ctx.export is None:
        raise ClientException("this process serves no exports", status_code=503)
    pages = ctx.export(tenant_id, start, end, resume_after)

    async def lines() -> AsyncIterator[bytes]:
        encoder = msgspec.json.Encoder()
        async for page in pages:
            yield encoder.encode_lines([line(item) for item in page])

    return Stream(lines(), media_type=NDJSON)
