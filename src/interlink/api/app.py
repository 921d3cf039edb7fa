"""The Litestar application: routes, auth, OpenAPI and problem+json errors."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Request, Response, Router, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from interlink import __version__, problems
from interlink.api.auth import TenancyMiddleware, authenticated, principal
from interlink.api.configuration import (
    EndpointController,
    SourceController,
    SubscriptionController,
    TenantController,
)
from interlink.api.connections import ConnectionController
from interlink.api.context import ApiContext
from interlink.api.erasures import create_erasure
from interlink.api.export import export_events
from interlink.api.filters import PreviewController, SegmentController
from interlink.api.jobs import JobController
from interlink.api.keys import ApiKeyController
from interlink.api.openapi import truthful
from interlink.api.params import known_query
from interlink.api.partners import EventTypeController, PartnerKitController, QuarantineController
from interlink.api.publish import PublishController
from interlink.api.pull import ConsumerController
from interlink.api.reconciliation import ReconciliationController
from interlink.api.request import JsonRequest
from interlink.api.stream_demo import stream_demo
from interlink.api.streams import StreamTokenController, sse_stream, ws_stream
from interlink.api.timeline import EventTimelineController
from interlink.api.traffic import DeliveryController, EventController
from interlink.console import create_console
from interlink.domain.watermark import OverWatermark
from interlink.storage.database import DatabaseUnavailable

log = structlog.get_logger("interlink.api")


def _problem_response(
    status: int,
    detail: str | None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, object]] | None = None,
    kind: str | None = None,
) -> Response[bytes]:
    return Response(
        content=problems.encode(problems.problem(status, detail, kind, errors=errors)),
        status_code=status,
        media_type=problems.CONTENT_TYPE,
        headers=headers,
    )


def _validation_detail(exc: ValidationException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                where = item.get("key") or item.get("source") or ""
                parts.append(f"{where}: {item.get('message', '')}".strip(": "))
        if parts:
            return f"{exc.detail}: " + "; ".join(parts) if exc.detail else "; ".join(parts)
    return str(exc.detail)


# How msgspec words a value that breaks the schema (the OpenAPI document's rules). Any other
# message of a decoding failure is a struct's own __post_init__ check, a rule across fields
# (open_seconds at most max_open_seconds) that the document cannot state: a 422, not a 400.
_SCHEMA_WORDS = (
    "Expected ",
    "Object contains unknown field",
    "Object missing required field",
    "Invalid enum value",
    "Invalid value",
)


def _breaks_the_document(exc: ValidationException) -> bool:
    items = exc.extra if isinstance(exc.extra, list) else []
    messages = [str(i.get("message", "")) for i in items if isinstance(i, dict)]
    return not messages or any(m.startswith(_SCHEMA_WORDS) for m in messages)


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, ValidationException):
        status = 400 if _breaks_the_document(exc) else 422
        return _problem_response(status, _validation_detail(exc))
    if exc.status_code >= 500:
        # Litestar's own 500s (a response that cannot be serialized, say) are unexpected too.
        return _on_unexpected(request, exc)
    detail = str(exc.detail)
    if exc.status_code == 413 and detail == "Request Entity Too Large":  # Litestar's words
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the body is larger than this operation's limit of {limit:,} bytes"
    errors = exc.extra if isinstance(exc.extra, list) else None
    # Headers the exception carries (a 405's Allow, a 401's WWW-Authenticate) are kept.
    return _problem_response(exc.status_code, detail, exc.headers, errors)


def _on_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _problem_response(503, "the database is unavailable; retry later")


def _on_over_watermark(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, OverWatermark)
    retry = {"Retry-After": str(exc.breach.retry_after_seconds)}
    return _problem_response(503, exc.breach.detail, retry, kind="over-watermark")


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    request_id = problems.new_request_id()
    # The method and path name the operation; the body and headers may hold secrets.
    log.error(
        "api.unexpected_error",
        request_id=request_id,
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return Response(
        content=problems.encode(problems.internal_error(request_id)),
        status_code=500,
        media_type=problems.CONTENT_TYPE,
        headers={problems.REQUEST_ID_HEADER: request_id},
    )


# /docs is Swagger UI served from Interlink itself: its assets come from the swagger-ui-py
# package (Swagger UI's dist, with its Apache-2.0 licence), never from a CDN, so the page
# renders on a machine without internet access.
SWAGGER_UI_ASSETS = "/static/swagger-ui"
_SWAGGER_UI_DIR = Path(str(importlib.resources.files("swagger_ui") / "static"))


class _TruthfulSwagger(SwaggerRenderPlugin):
    """Swagger UI over the document ``/openapi.json`` serves (``truthful``), not Litestar's raw
    one: the page and the fuzzer read the same rules."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, truthful(openapi_schema))


def _swagger_ui() -> SwaggerRenderPlugin:
    return _TruthfulSwagger(
        path="/",
        js_url=f"{SWAGGER_UI_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_UI_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_UI_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_UI_ASSETS}/favicon-32x32.png'>",
    )


def create_api(ctx: ApiContext) -> Litestar:
    async def context() -> ApiContext:
        return ctx

    document: dict[str, Any] = {}

    @get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        if not document:  # made once: the routes do not change while the app runs
            document.update(truthful(request.app.openapi_schema.to_schema()))
        return document

    @get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[bytes] | dict[str, str]:
        try:
            await ctx.management.db.ping()
        except Exception:
            return _problem_response(503, "the database is not reachable")
        return {"status": "ready"}

    @get("/", include_in_schema=False)
    async def root() -> Redirect:
        # A browser at the root wants the console (which sends it to its login first).
        return Redirect("/console/")

    # Every resource needs a key, and the key is checked before the body is read (a guard runs
    # before the handler's data is decoded): no one without a key makes the server parse.
    resources = Router(
        path="/",
        guards=[authenticated, known_query],
        route_handlers=[
            TenantController,
            ApiKeyController,
            SourceController,
            EndpointController,
            SubscriptionController,
            PreviewController,
            SegmentController,
            EventController,
            PublishController,
            ConsumerController,
            EventTimelineController,
            DeliveryController,
            JobController,
            ConnectionController,
            EventTypeController,
            PartnerKitController,
            QuarantineController,
            ReconciliationController,
            StreamTokenController,
            export_events,
            create_erasure,
        ],
    )
    # The streams authenticate themselves: a browser's EventSource sends no header, only a
    # stream token in the query (api/streams.py).
    streams = Router(path="/", route_handlers=[sse_stream, ws_stream])
    return Litestar(
        route_handlers=[
            resources,
            streams,
            stream_demo,
            # The web console: its own session cookie, CSRF check and HTML errors (console/).
            create_console(ctx),
            openapi,
            healthz,
            readyz,
            root,
            create_static_files_router(
                path=SWAGGER_UI_ASSETS, directories=[_SWAGGER_UI_DIR], include_in_schema=False
            ),
        ],
        request_class=JsonRequest,
        dependencies={
            "principal": Provide(principal, sync_to_thread=False),
            "ctx": Provide(context),
        },
        middleware=[
            DefineMiddleware(TenancyMiddleware, admin_key=ctx.admin_key, management=ctx.management)
        ],
        exception_handlers={
            HTTPException: _on_http_error,
            DatabaseUnavailable: _on_unavailable,
            OverWatermark: _on_over_watermark,
            Exception: _on_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Interlink",
            version=__version__,
            description="Management API: tenants, sources, endpoints, subscriptions, events (and "
            "publishing your own), deliveries, jobs, connections, event types, partner kits, "
            "quarantine, and realtime streams of events (SSE at /api/v1/stream; WebSocket at "
            "/api/v1/ws, the same parameters and messages). Authenticate with "
            "'Authorization: Bearer <api key>'.",
            path="/docs",
            render_plugins=[_swagger_ui()],
        ),
        debug=False,
    )
