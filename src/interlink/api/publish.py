"""``POST /api/v1/events`` and ``/api/v1/events/batch``: a tenant's own services publish events.

The rules are the domain's (domain/publish.py: catalog validation, dedupe namespace); the
events are stored through the same group commit as ingest, so the answer (202) waits for the
durable commit, and a batch is one transaction: all of it is stored, or none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, post
from litestar.exceptions import ClientException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import Unprocessable, instant
from interlink.api.schemas import Instant
from interlink.domain import publish
from interlink.domain.publish import MAX_BATCH, Publication, PublishRefused
from interlink.domain.watermark import OverWatermark
from interlink.storage.database import DatabaseUnavailable

log = structlog.get_logger("interlink.api")

# The largest body each operation reads (413 beyond): an event's as a webhook's at ingest, a
# batch's as Litestar's default for any request.
MAX_EVENT_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 10 * 1024 * 1024

# Event types are matched by subscription patterns (``booking.*``): no wildcard, no spaces.
EventType = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
]
# No control characters: PostgreSQL's text refuses NUL, and a key is shown in lists and logs.
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]


class PublishIn(msgspec.Struct, forbid_unknown_fields=True):
    type: EventType
    data: dict[str, Any]
    key: Key | None = None  # ordering: an ordered endpoint gets a key's events in publish order
    idempotency_key: Key | None = None  # dedupe: the same key again answers the first event
    occurred_at: Instant | None = None


class PublishBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    # The document states the bound; more than it is refused with a 413 (too much for one
    # request), not as a malformed body.
    events: Annotated[
        list[PublishIn], msgspec.Meta(min_length=1, extra_json_schema={"maxItems": MAX_BATCH})
    ]


class PublishedOut(msgspec.Struct):
    id: str  # the event's id; for a duplicate, the id of the event first published under its key
    duplicate: bool


class PublishedBatchOut(msgspec.Struct):
    data: list[PublishedOut]  # in the order of the request's events


def _publication(index: int, p: PublishIn, batch: bool) -> Publication:
    occurred = p.occurred_at
    if isinstance(occurred, str):
        occurred = instant(f"events[{index}].occurred_at" if batch else "occurred_at", occurred)
    return Publication(p.type, p.data, p.key, p.idempotency_key, occurred)


async def _publish(
    ctx: ApiContext, tenant_id: str, items: Sequence[PublishIn], *, batch: bool
) -> list[PublishedOut]:
    publications = [_publication(i, p, batch) for i, p in enumerate(items)]
    try:
        events = publish.prepare(tenant_id, publications, time.time(), ctx.catalog)
    except PublishRefused as exc:
        detail = "; ".join(r.describe(batch) for r in exc.refusals)
        what = "nothing of the batch was stored" if batch else "the event was not stored"
        raise Unprocessable(
            f"{detail} ({what})",
            extra=[msgspec.structs.asdict(r) for r in exc.refusals],
        ) from None
    try:
        appended = await ctx.publish(events)
    except OverWatermark:
        raise  # a 503 with Retry-After of its own (api/app.py)
    except Exception as exc:
        log.warning("publish.unavailable", tenant_id=tenant_id, error=type(exc).__name__)
        raise DatabaseUnavailable(str(exc)) from None
    return [PublishedOut(a.event_id, a.duplicate) for a in appended]


class PublishController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @post(
        "/",
        status_code=202,
        summary="Publish an event of your own: stored durably, then routed like any event",
        request_max_body_size=MAX_EVENT_BYTES,
    )
    async def publish(self, data: PublishIn, principal: Principal, ctx: ApiContext) -> PublishedOut:
        (out,) = await _publish(ctx, require_tenant(principal), [data], batch=False)
        return out

    @post(
        "/batch",
        status_code=202,
        summary=f"Publish up to {MAX_BATCH:,} events in one durable transaction (all or none)",
        request_max_body_size=MAX_BATCH_BYTES,
    )
    async def publish_batch(
        self, data: PublishBatchIn, principal: Principal, ctx: ApiContext
    ) -> PublishedBatchOut:
        tenant_id = require_tenant(principal)
        if len(data.events) > MAX_BATCH:
            raise ClientException(
                f"a batch holds at most {MAX_BATCH:,} events, this one has {len(data.events):,}:"
                " split it (nothing was stored)",
                status_code=413,
            )
        return PublishedBatchOut(await _publish(ctx, tenant_id, data.events, batch=True))
