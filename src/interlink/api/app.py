"""The Litestar application: routes, auth, OpenAPI and problem+json errors."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.response import Redirect

from interlink import __version__, problems
from interlink.api.auth import TenancyMiddleware, principal
from interlink.api.configuration import (
    EndpointController,
    SourceController,
    SubscriptionController,
    TenantController,
)
from interlink.api.connections import ConnectionController
from interlink.api.context import ApiContext
from interlink.api.jobs import JobController
from interlink.api.partners import EventTypeController, PartnerKitController, QuarantineController
from interlink.api.reconciliation import ReconciliationController
from interlink.api.timeline import EventTimelineController
from interlink.api.traffic import DeliveryController, EventController
from interlink.storage.database import DatabaseUnavailable


def _problem_response(status: int, detail: str | None) -> Response[bytes]:
    return Response(
        content=problems.encode(problems.problem(status, detail)),
        status_code=status,
        media_type=problems.CONTENT_TYPE,
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


def _on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.detail == "Input data was truncated":  # msgspec's words for a JSON body cut short
        return _problem_response(400, "JSON is malformed: the body ends before the JSON does")
    if isinstance(exc, ValidationException):
        return _problem_response(400, _validation_detail(exc))
    return _problem_response(exc.status_code, str(exc.detail))


def _on_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _problem_response(503, "the database is unavailable; retry later")


def create_api(ctx: ApiContext) -> Litestar:
    async def context() -> ApiContext:
        return ctx

    @get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return request.app.openapi_schema.to_schema()

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
        # Nothing lives at the root yet: send a browser to the API's docs (the console, later).
        return Redirect("/docs")

    return Litestar(
        route_handlers=[
            TenantController,
            SourceController,
            EndpointController,
            SubscriptionController,
            EventController,
            EventTimelineController,
            DeliveryController,
            JobController,
            ConnectionController,
            EventTypeController,
            PartnerKitController,
            QuarantineController,
            ReconciliationController,
            openapi,
            healthz,
            readyz,
            root,
        ],
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
        },
        openapi_config=OpenAPIConfig(
            title="Interlink",
            version=__version__,
            description="Management API: tenants, sources, endpoints, subscriptions, events, "
            "deliveries, jobs, connections, event types, partner kits, quarantine. Authenticate "
            "with 'Authorization: Bearer <api key>'.",
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
        debug=False,
    )
