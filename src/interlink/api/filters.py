"""Segments (``/api/v1/segments``), the checks of filters and transformations a subscription is
saved with, and previews: an event through a subscription's filter and transformation."""

from __future__ import annotations

import time

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.exceptions import ClientException, NotFoundException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.filter_schemas import (
    DraftPreviewIn,
    PreviewEvent,
    PreviewIn,
    PreviewOut,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
)
from interlink.api.params import Unprocessable, found, page
from interlink.api.schemas import Listing
from interlink.delivery.transforming import event_variables, transform
from interlink.domain.filters import (
    COST_LIMIT,
    Compiled,
    FilterError,
    activation,
    check_text,
    compile_filter,
    cost_bound,
    event_shape,
    explain,
)
from interlink.domain.patterns import InvalidPattern, matches_any, validate_pattern
from interlink.domain.transforms import TransformError, compile_transform
from interlink.storage.segments import SegmentExists, Segments


async def checked_filter(ctx: ApiContext, tenant_id: str, text: str) -> Compiled:
    """The filter compiled with the tenant's segments, or a 422 naming the field and position."""
    segments = await Segments(ctx.management).bodies([tenant_id])
    try:
        return compile_filter(text, segments[tenant_id])
    except FilterError as exc:
        raise Unprocessable(f"filter: {exc}") from None


def checked_transform(text: str) -> None:
    try:
        compile_transform(text)
    except TransformError as exc:
        raise Unprocessable(f"transform: {exc}") from None


def checked_patterns(patterns: list[str]) -> list[str]:
    try:
        return [validate_pattern(p) for p in patterns]
    except InvalidPattern as exc:
        raise Unprocessable(f"event_types: {exc}") from None


class SegmentController(Controller):
    path = "/api/v1/segments"
    tags = ["segments"]

    @post("/", summary='Create a segment: a named CEL predicate filters use as segment("name")')
    async def create(self, data: SegmentIn, principal: Principal, ctx: ApiContext) -> SegmentOut:
        tenant_id = require_tenant(principal)
        _check_segment(data.expression)
        try:
            seg = await Segments(ctx.management).create(
                tenant_id, data.name, data.expression, data.description
            )
        except SegmentExists:
            raise ClientException(f"a segment '{data.name}' exists", status_code=409) from None
        return SegmentOut.of(seg)

    @get("/", summary="List segments")
    async def list_(
        self, principal: Principal, ctx: ApiContext, limit: int = 50, cursor: str | None = None
    ) -> Listing:
        items, nxt = await Segments(ctx.management).page(
            require_tenant(principal), page(limit, cursor)
        )
        return Listing([SegmentOut.of(s) for s in items], nxt)

    @get("/{name:str}", summary="Get a segment")
    async def get_(self, name: str, principal: Principal, ctx: ApiContext) -> SegmentOut:
        seg = await Segments(ctx.management).get(require_tenant(principal), name)
        return SegmentOut.of(found(seg, "segment", name))

    @patch(
        "/{name:str}",
        summary="Change a segment: every subscription whose filter uses it is re-targeted",
    )
    async def update(
        self, name: str, data: SegmentPatch, principal: Principal, ctx: ApiContext
    ) -> SegmentOut:
        tenant_id = require_tenant(principal)
        segments = Segments(ctx.management)
        found(await segments.get(tenant_id, name), "segment", name)
        if data.expression is not None:
            _check_segment(data.expression)
            await _check_users(ctx, segments, tenant_id, name, data.expression)
        seg = await segments.update(tenant_id, name, data.expression, data.description)
        return SegmentOut.of(found(seg, "segment", name))

    @delete(
        "/{name:str}", summary="Delete a segment no subscription's filter uses (409 if one does)"
    )
    async def delete_(self, name: str, principal: Principal, ctx: ApiContext) -> None:
        tenant_id = require_tenant(principal)
        segments = Segments(ctx.management)
        users = await segments.users(tenant_id, name)
        if users:
            shown = ", ".join(users[:10]) + (" …" if len(users) > 10 else "")
            raise ClientException(
                f"segment '{name}' is used by the filters of {len(users)} subscription(s): "
                f"{shown}; change or delete those first",
                status_code=409,
            )
        if not await segments.delete(tenant_id, name):
            raise NotFoundException(f"no segment '{name}'")


def _check_segment(text: str) -> None:
    try:
        check_text(text, allow_segments=False)
    except FilterError as exc:
        raise Unprocessable(f"expression: {exc}") from None


async def _check_users(
    ctx: ApiContext, segments: Segments, tenant_id: str, name: str, expression: str
) -> None:
    """Every filter using the segment must still compile with its new expression."""
    bodies = (await segments.bodies([tenant_id]))[tenant_id] | {name: expression}
    for sub_id in await segments.users(tenant_id, name):
        sub = await ctx.management.get_subscription(tenant_id, sub_id)
        if sub is None or sub.filter is None:
            continue
        try:
            compile_filter(sub.filter, bodies)
        except FilterError as exc:
            raise Unprocessable(
                f"expression: subscription {sub_id}'s filter would not compile with it: {exc}"
            ) from None


class PreviewController(Controller):
    path = "/api/v1/subscriptions"
    tags = ["subscriptions"]

    @post(
        "/{subscription_id:str}/preview",
        summary="Run a stored or given event through the subscription's filter and "
        "transformation: match, output, cost",
        status_code=200,
    )
    async def preview(
        self, subscription_id: str, data: PreviewIn, principal: Principal, ctx: ApiContext
    ) -> PreviewOut:
        tenant_id = require_tenant(principal)
        sub = found(
            await ctx.management.get_subscription(tenant_id, subscription_id),
            "subscription",
            subscription_id,
        )
        event = await _event_of(ctx, tenant_id, data.event_id, data.event)
        compiled = None if sub.filter is None else await checked_filter(ctx, tenant_id, sub.filter)
        return run_preview(list(sub.event_types), compiled, sub.transform, event)

    @post(
        "/preview",
        summary="Preview a draft subscription (types, filter, transformation) on an event",
        status_code=200,
    )
    async def draft(
        self, data: DraftPreviewIn, principal: Principal, ctx: ApiContext
    ) -> PreviewOut:
        tenant_id = require_tenant(principal)
        patterns = checked_patterns(data.event_types)
        compiled = (
            None if data.filter is None else await checked_filter(ctx, tenant_id, data.filter)
        )
        if data.transform is not None:
            checked_transform(data.transform)
        event = await _event_of(ctx, tenant_id, data.event_id, data.event)
        return run_preview(patterns, compiled, data.transform, event)


async def _event_of(
    ctx: ApiContext, tenant_id: str, event_id: str | None, given: PreviewEvent | None
) -> PreviewEvent:
    if (event_id is None) == (given is None):
        raise Unprocessable("event: give either event (an event here) or event_id (a stored one)")
    if given is not None:
        return given
    assert event_id is not None
    stored = found(await ctx.events.get(tenant_id, event_id), "event", event_id)
    return PreviewEvent(
        type=stored.type,
        data=msgspec.json.decode(stored.data),
        source=stored.source_id,
        key=stored.key,
        headers=dict(stored.headers),
        occurred_at=stored.occurred_at,
    )


def run_preview(
    patterns: list[str], compiled: Compiled | None, transform_text: str | None, e: PreviewEvent
) -> PreviewOut:
    type_matched = matches_any(tuple(patterns), e.type)
    env = {
        "type": e.type,
        "source": e.source,
        "key": e.key,
        "data": e.data,
        "headers": dict(e.headers),
        "occurred_at": e.occurred_at,
    }
    outcome = error = None
    bound: int | None = None
    started = time.perf_counter()
    if compiled is not None:
        shape = event_shape(e.data) if compiled.shaped else None
        bound = None if shape is None else cost_bound(compiled, shape)
        result, error = explain(compiled, activation(env), shape)
        outcome = result.value
    filter_micros = int((time.perf_counter() - started) * 1e6)
    matched = type_matched and outcome in (None, "match")
    output, transform_error, transform_micros = _output(matched, transform_text, e)
    return PreviewOut(
        matched=matched,
        type_matched=type_matched,
        filter_outcome=outcome,
        filter_error=error,
        filter_micros=filter_micros,
        cost_bound=bound,
        cost_limit=COST_LIMIT,
        output=output,
        transform_error=transform_error,
        transform_micros=transform_micros,
    )


def _output(
    matched: bool, text: str | None, e: PreviewEvent
) -> tuple[msgspec.Raw | None, str | None, int]:
    if not matched:
        return None, None, 0
    data = msgspec.json.encode(e.data)
    if text is None:
        return msgspec.Raw(data), None, 0
    variables = event_variables(e.type, e.source, e.key, dict(e.headers), e.occurred_at)
    try:
        result = transform(text, data, variables)
    except TransformError as exc:
        return None, str(exc), 0
    return msgspec.Raw(result.body), None, result.micros
