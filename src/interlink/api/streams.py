"""Realtime streams of a tenant's events: Server-Sent Events, WebSocket, and stream tokens.

``GET /api/v1/stream`` (SSE) and ``/api/v1/ws`` (WebSocket) take a tenant key in the
``Authorization`` header, or a stream token (``POST /api/v1/stream-tokens``) as ``?token=`` for
browsers, which cannot set headers on an ``EventSource``. A token is checked when the stream
connects; the stream then lives as long as the connection. Neither a key nor a token is ever
logged: the log lines name the tenant and the transport only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, WebSocket, get, post, websocket
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.params import Parameter

from interlink import problems
from interlink.api.auth import Principal, authenticate_header, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import Unprocessable
from interlink.domain.streams import (
    DEFAULT_TOKEN_SECONDS,
    MAX_FILTER_VALUES,
    MAX_TOKEN_SECONDS,
    InvalidFilter,
    StreamFilter,
    StreamGrant,
    TokenRefused,
    mint_token,
    parse_list,
    stream_filter,
    verify_token,
)
from interlink.streams.hub import HubClosed
from interlink.streams.service import Streams
from interlink.streams.session import StreamSession
from interlink.streams.transports import SseStream, serve_websocket

log = structlog.get_logger("interlink.streams")

Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
MAX_POSITION = 2**63 - 1
_POSITION = re.compile(r"[0-9]{1,18}")  # a log position as the client sends it back
_QUERY = frozenset({"types", "source", "key", "token", "from"})


class StreamTokenIn(msgspec.Struct, forbid_unknown_fields=True):
    """The filters a token is limited to (none: any of the tenant's events) and how long it may
    be used to connect."""

    types: Annotated[list[Pattern], msgspec.Meta(max_length=MAX_FILTER_VALUES)] = []
    sources: Annotated[list[Id], msgspec.Meta(max_length=MAX_FILTER_VALUES)] = []
    keys: Annotated[list[Key], msgspec.Meta(max_length=MAX_FILTER_VALUES)] = []
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=int(MAX_TOKEN_SECONDS))] = int(
        DEFAULT_TOKEN_SECONDS
    )


class StreamTokenOut(msgspec.Struct):
    """A stream token, shown once: pass it as ``?token=`` to /api/v1/stream or /api/v1/ws
    before ``expires_at``."""

    token: str
    tenant_id: str
    expires_at: float
    types: list[str]
    sources: list[str]
    keys: list[str]


def _streams(ctx: ApiContext) -> Streams:
    if ctx.streams is None:
        raise ClientException("this process serves no streams", status_code=503)
    return ctx.streams


def _asked(types: str | None, source: str | None, key: str | None) -> StreamFilter:
    try:
        return stream_filter(
            parse_list("types", types), parse_list("source", source), parse_list("key", key)
        )
    except InvalidFilter as exc:
        raise Unprocessable(str(exc)) from None


async def authorize(
    ctx: ApiContext, header: str, token: str | None, asked: StreamFilter
) -> tuple[str, StreamFilter]:
    """The tenant a stream is for and its filter: from the tenant key in the header, or from a
    stream token (whose filter the request may narrow, not widen). 401 for a missing, forged
    or expired credential, 403 for one that may not stream this (the admin key; a token of
    another tenant than the header's key)."""
    principal: Principal | None = None
    if header:
        principal = await authenticate_header(header, ctx.admin_key, ctx.management)
    if token is None:
        if principal is None:
            raise NotAuthorizedException(
                "send a tenant key as 'Authorization: Bearer <key>', or a stream token as "
                "?token= (POST /api/v1/stream-tokens)"
            )
        return require_tenant(principal), asked
    try:
        grant = verify_token(_streams(ctx).token_key, token, time.time())
    except TokenRefused as exc:
        raise NotAuthorizedException(exc.detail) from None
    if principal is not None and not principal.is_admin and principal.tenant_id != grant.tenant_id:
        raise PermissionDeniedException("the stream token is another tenant's than the key's")
    try:
        return grant.tenant_id, grant.filter.narrowed_by(asked)
    except InvalidFilter as exc:
        raise PermissionDeniedException(str(exc)) from None


def resume_position(last_event_id: str | None, from_: int | None) -> int | None:
    """Where a client resumes: the ``Last-Event-ID`` its EventSource sends on reconnecting, else
    ``from``; each is a log position (a message's id)."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not _POSITION.fullmatch(value):
            raise ValidationException("Last-Event-ID must be a log position (a message's id)")
        return int(value)
    return from_


def _known_query(query: Mapping[str, object]) -> None:
    unknown = sorted(name for name in query if name not in _QUERY)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise ValidationException(f"unknown query parameter {shown}; see /openapi.json")


class StreamTokenController(Controller):
    path = "/api/v1/stream-tokens"
    tags = ["streams"]

    @post("/", summary="Mint a short-lived token to open a stream from a browser (?token=)")
    async def create(
        self, principal: Principal, ctx: ApiContext, data: StreamTokenIn | None = None
    ) -> StreamTokenOut:
        tenant_id = require_tenant(principal)
        data = data or StreamTokenIn()
        try:
            f = stream_filter(data.types, data.sources, data.keys)
        except InvalidFilter as exc:
            raise Unprocessable(str(exc)) from None
        grant = StreamGrant(tenant_id, time.time() + data.expires_in, f)
        return StreamTokenOut(
            token=mint_token(_streams(ctx).token_key, grant),
            tenant_id=tenant_id,
            expires_at=grant.expires_at,
            types=list(f.types),
            sources=list(f.sources),
            keys=list(f.keys),
        )


@get(
    "/api/v1/stream",
    tags=["streams"],
    summary="A tenant's events as they are appended to the log (Server-Sent Events)",
    description=(
        "text/event-stream: each event's `id` is its log position and its `data` the event "
        "as JSON (its type, source, key, times, data). Reconnecting with `Last-Event-ID` "
        "(or `from`) replays what was missed, then continues live. Messages `interlink.restart`, "
        "`interlink.overflow` and `interlink.shutdown` speak of the stream itself; comment "
        "lines are heartbeats. Authenticate with a tenant key, or `token` from "
        "POST /api/v1/stream-tokens."
    ),
    media_type="text/event-stream",
)
async def sse_stream(
    request: Request[Any, Any, Any],
    ctx: ApiContext,
    types: Annotated[
        str | None, Parameter(description="Type patterns, comma-separated: booking.*,payment.*")
    ] = None,
    source: Annotated[str | None, Parameter(description="Source ids, comma-separated")] = None,
    key: Annotated[str | None, Parameter(description="Event keys, comma-separated")] = None,
    token: Annotated[str | None, Parameter(description="A stream token")] = None,
    from_: Annotated[
        int | None,
        Parameter(query="from", ge=0, le=MAX_POSITION, description="Resume after this position"),
    ] = None,
) -> SseStream:
    _known_query(request.query_params)
    streams = _streams(ctx)
    tenant_id, f = await authorize(
        ctx, request.headers.get("authorization", ""), token, _asked(types, source, key)
    )
    resume = resume_position(request.headers.get("last-event-id"), from_)
    session = StreamSession(
        streams.hub, streams.log, tenant_id, f, resume, streams.heartbeat_seconds
    )
    try:
        await session.open()
    except HubClosed:
        raise ClientException("the server is shutting down; reconnect", status_code=503) from None
    return SseStream(session, streams.recorder)


@websocket("/api/v1/ws")
async def ws_stream(socket: WebSocket[Any, Any, Any], ctx: ApiContext) -> None:
    """The same stream over a WebSocket: text messages ``{"id", "data"}``, and notices
    ``{"event", "data"}``."""
    query = socket.query_params
    try:
        _known_query(query)
        streams = _streams(ctx)
        tenant_id, f = await authorize(
            ctx,
            socket.headers.get("authorization", ""),
            query.get("token"),
            _asked(query.get("types"), query.get("source"), query.get("key")),
        )
        raw_from = query.get("from")
        if raw_from is not None and not _POSITION.fullmatch(raw_from):
            raise ValidationException("from must be a log position (a message's id)")
        resume = None if raw_from is None else int(raw_from)
        session = StreamSession(
            streams.hub, streams.log, tenant_id, f, resume, streams.heartbeat_seconds
        )
        await session.open()
    except (ClientException, NotAuthorizedException, PermissionDeniedException) as exc:
        await _refuse(socket, exc.status_code, str(exc.detail))
        return
    except HubClosed:
        await _refuse(socket, 503, "the server is shutting down; reconnect")
        return
    await serve_websocket(socket, session, streams.recorder)


async def _refuse(socket: WebSocket[Any, Any, Any], status: int, detail: str) -> None:
    """A refused WebSocket gets an HTTP answer with a problem+json body where the server can
    send one (the ASGI denial extension), else is closed with 4000 + the status."""
    if socket.connection_state == "init":
        await socket.receive()  # websocket.connect
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        start: Any = {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", problems.CONTENT_TYPE.encode())],
        }
        await socket.send(start)
        body: Any = {
            "type": "websocket.http.response.body",
            "body": problems.encode(problems.problem(status, detail)),
        }
        await socket.send(body)
        return
    await socket.accept()
    await socket.close(code=4000 + status, reason=detail[:120])
