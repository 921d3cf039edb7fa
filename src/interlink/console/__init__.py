"""The web console at ``/console``: server-rendered pages over the API's own storage calls.

Mounted in the management API's application (api/app.py), so every process that serves the API
serves the console too, on SQLite and PostgreSQL alike. Pages are Jinja2 templates; the few
live parts (the live tail, a job's progress bar) poll with htmx, vendored in ``static/``
(docs/architecture.md says why).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from litestar import Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router

from interlink.api.context import ApiContext
from interlink.console import auth, endpoints, operations, partners, traffic
from interlink.console.web import ConsoleMiddleware, check_csrf, login_of, on_error
from interlink.storage.console_sessions import ConsoleSessions
from interlink.storage.console_stats import ConsoleStats
from interlink.storage.event_counts import EventCounts

_STATIC = Path(str(importlib.resources.files("interlink.console") / "static"))


def create_console(ctx: ApiContext) -> Router:
    sessions = ConsoleSessions(
        ctx.management.db, ctx.settings.console_idle_seconds, ctx.settings.console_max_seconds
    )
    stats = ConsoleStats(ctx.events.db)
    counts = ctx.event_counts or EventCounts(ctx.events.db)

    async def provide_sessions() -> ConsoleSessions:
        return sessions

    async def provide_stats() -> ConsoleStats:
        return stats

    async def provide_counts() -> EventCounts:
        return counts

    return Router(
        path="/console",
        include_in_schema=False,
        route_handlers=[
            auth.login_page,
            auth.login,
            auth.logout,
            auth.tenants_page,
            auth.choose_tenant,
            traffic.overview,
            traffic.events_page,
            traffic.event_page,
            traffic.live_page,
            traffic.live_rows,
            endpoints.endpoints_page,
            endpoints.endpoint_page,
            endpoints.pause,
            endpoints.resume,
            endpoints.rotate,
            endpoints.send_test,
            operations.dead_page,
            operations.redrive,
            operations.job_page,
            operations.job_progress,
            operations.cancel_job,
            operations.quarantine_page,
            operations.reprocess,
            partners.partners_page,
            create_static_files_router(
                path="/static", directories=[_STATIC], include_in_schema=False
            ),
        ],
        dependencies={
            "login": Provide(login_of, sync_to_thread=False),
            "sessions": Provide(provide_sessions),
            "stats": Provide(provide_stats),
            "counts": Provide(provide_counts),
        },
        middleware=[DefineMiddleware(ConsoleMiddleware, sessions=lambda: sessions)],
        before_request=check_csrf,
        exception_handlers={HTTPException: on_error},
    )
