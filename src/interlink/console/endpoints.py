"""Endpoints: their health, settings and recent deliveries; pause, resume, rotate, test."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from interlink.api.configuration import signing_secret
from interlink.api.context import ApiContext
from interlink.api.params import page
from interlink.api.schemas import scheme_of
from interlink.console.traffic import health
from interlink.console.web import PREFIX, Login, not_found, render
from interlink.domain import publish
from interlink.domain.models import Endpoint, EndpointStatus
from interlink.domain.publish import Publication
from interlink.domain.secret_rotation import DEFAULT_OVERLAP_SECONDS
from interlink.routing.matching import endpoints_for
from interlink.storage.deliveries import DeliveryFilter
from interlink.storage.pagination import Page

TEST_EVENT_TYPE = "interlink.test"
RECENT = 20


async def _endpoint(ctx: ApiContext, login: Login, endpoint_id: str) -> Endpoint:
    endpoint = await ctx.management.get_endpoint(login.tenant_id, endpoint_id)
    if endpoint is None:
        raise not_found("endpoint", endpoint_id)
    return endpoint


@get("/endpoints")
async def endpoints_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, cursor: str | None = None
) -> Response[str]:
    tenant_id, now = login.tenant_id, time.time()
    items, nxt = await ctx.management.list_endpoints(tenant_id, page(50, cursor))
    rows = [(e, await health(ctx, tenant_id, e, now)) for e in items]
    return render(request, "endpoints.html", rows=rows, next_cursor=nxt)


async def _endpoint_page(
    request: Request[Any, Any, Any],
    login: Login,
    ctx: ApiContext,
    endpoint: Endpoint,
    **shown: Any,
) -> Response[str]:
    tenant_id = login.tenant_id
    recent, _ = await ctx.deliveries.find(
        tenant_id, DeliveryFilter(endpoint_id=endpoint.id), Page(limit=RECENT)
    )
    return render(
        request,
        "endpoint.html",
        endpoint=endpoint,
        health=await health(ctx, tenant_id, endpoint, time.time()),
        recent=recent,
        **{"secret": None, "public_key": None, "message": "", **shown},
    )


@get("/endpoints/{endpoint_id:str}")
async def endpoint_page(
    request: Request[Any, Any, Any], endpoint_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    endpoint = await _endpoint(ctx, login, endpoint_id)
    return await _endpoint_page(request, login, ctx, endpoint)


async def _set_status(
    ctx: ApiContext, login: Login, endpoint_id: str, status: EndpointStatus
) -> Redirect:
    await _endpoint(ctx, login, endpoint_id)
    # As PATCH /api/v1/endpoints/{id} does: a resumed endpoint forgets why it was disabled.
    await ctx.management.update_endpoint(
        login.tenant_id, endpoint_id, {"status": status, "disabled_reason": None}
    )
    return Redirect(f"{PREFIX}/endpoints/{endpoint_id}", status_code=303)


@post("/endpoints/{endpoint_id:str}/pause", status_code=303)
async def pause(endpoint_id: str, login: Login, ctx: ApiContext) -> Redirect:
    return await _set_status(ctx, login, endpoint_id, EndpointStatus.PAUSED)


@post("/endpoints/{endpoint_id:str}/resume", status_code=303)
async def resume(endpoint_id: str, login: Login, ctx: ApiContext) -> Redirect:
    return await _set_status(ctx, login, endpoint_id, EndpointStatus.ACTIVE)


@post("/endpoints/{endpoint_id:str}/rotate", status_code=200)
async def rotate(
    request: Request[Any, Any, Any], endpoint_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    """A new signing secret, shown on this response only (it is not kept anywhere it could be
    shown again); the current ones keep signing beside it for the API's default overlap."""
    endpoint = await _endpoint(ctx, login, endpoint_id)
    secret, public_key = signing_secret(scheme_of(endpoint.secrets[-1].value), None)
    rotated = await ctx.management.rotate_endpoint_secret(
        login.tenant_id, endpoint_id, secret, now=time.time(), overlap=DEFAULT_OVERLAP_SECONDS
    )
    if rotated is None:
        raise not_found("endpoint", endpoint_id)
    return await _endpoint_page(
        request,
        login,
        ctx,
        rotated,
        secret=None if public_key else secret,
        public_key=public_key,
        message="The signing secret was rotated: copy it now, it is not shown again.",
    )


@post("/endpoints/{endpoint_id:str}/test", status_code=200)
async def send_test(
    request: Request[Any, Any, Any], endpoint_id: str, login: Login, ctx: ApiContext
) -> Response[str]:
    """Publishes an ``interlink.test`` event, as ``POST /api/v1/events`` would, and sends it to
    this endpoint whether or not it subscribes to the type (others get it only if they do)."""
    tenant_id = login.tenant_id
    endpoint = await _endpoint(ctx, login, endpoint_id)
    sent = Publication(TEST_EVENT_TYPE, {"test": True, "endpoint_id": endpoint_id})
    events = publish.prepare(tenant_id, [sent], time.time(), ctx.catalog)
    (appended,) = await ctx.publish(events)
    subscribed = endpoints_for(
        TEST_EVENT_TYPE, tenant_id, await ctx.management.subscriptions_for([tenant_id])
    )
    if endpoint_id not in subscribed:
        event = await ctx.events.get(tenant_id, appended.event_id)
        if event is not None:
            await ctx.deliveries.replay(tenant_id, event.id, event.seq, [endpoint_id], event.key)
    return await _endpoint_page(
        request,
        login,
        ctx,
        endpoint,
        message=f"A test event was sent: {appended.event_id}.",
        test_event_id=appended.event_id,
    )
