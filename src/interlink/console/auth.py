"""Login, logout and (for the admin key) the choice of a tenant.

A key typed into the login form is checked as the API checks a bearer key (api/auth.py) and
exchanged for a session; the key itself is not kept, echoed, put in a URL or logged.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import structlog
from litestar import Request, Response, get, post
from litestar.response import Redirect

from interlink.api.context import ApiContext
from interlink.api.params import page
from interlink.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    Login,
    maybe_login,
    new_login_token,
    render,
    session_cookie,
)
from interlink.storage.console_sessions import ConsoleSessions
from interlink.storage.tenancy import system_scope

log = structlog.get_logger("interlink.console")


def _login_form(
    request: Request[Any, Any, Any], status: int = 200, error: str = ""
) -> Response[str]:
    token = new_login_token()
    cookie = session_cookie(request, LOGIN_COOKIE, token, 3600)
    return render(request, "login.html", status=status, cookies=[cookie], csrf=token, error=error)


@get("/login")
async def login_page(request: Request[Any, Any, Any]) -> Response[str] | Redirect:
    if maybe_login(request) is not None:
        return Redirect(f"{PREFIX}/")
    return _login_form(request)


@post("/login", status_code=200)
async def login(
    request: Request[Any, Any, Any], ctx: ApiContext, sessions: ConsoleSessions
) -> Response[Any]:
    key = str((await request.form()).get("key") or "").strip()
    admin = bool(key) and hmac.compare_digest(key.encode(), ctx.admin_key.encode())
    found = None
    if key and not admin:
        with system_scope("api key lookup"):
            found = await ctx.management.keys.live_key(key)
    if not admin and found is None:
        log.info("console.login_refused")  # no key, nor any part of one, in the log
        return _login_form(request, status=401, error="That key is not valid.")
    key_id, tenant_id = (None, None) if found is None else found
    _, token = await sessions.create(tenant_id, key_id, time.time())
    log.info("console.login", tenant_id=tenant_id, admin=admin)
    target = f"{PREFIX}/tenants" if tenant_id is None else f"{PREFIX}/"
    return Redirect(
        target,
        status_code=303,
        cookies=[
            session_cookie(request, COOKIE, token, int(sessions.longest)),
            session_cookie(request, LOGIN_COOKIE, "", 0),
        ],
    )


@post("/logout", status_code=200)
async def logout(
    request: Request[Any, Any, Any], login: Login, sessions: ConsoleSessions
) -> Redirect:
    await sessions.end(login.token)
    return Redirect(
        f"{PREFIX}/login", status_code=303, cookies=[session_cookie(request, COOKIE, "", 0)]
    )


@get("/tenants")
async def tenants_page(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, cursor: str | None = None
) -> Response[Any]:
    if not login.session.admin:
        return Redirect(f"{PREFIX}/")
    with system_scope("console admin: tenants"):
        items, nxt = await ctx.management.list_tenants(page(50, cursor))
    return render(request, "tenants.html", tenants=items, next_cursor=nxt)


@post("/tenants", status_code=200)
async def choose_tenant(
    request: Request[Any, Any, Any], login: Login, ctx: ApiContext, sessions: ConsoleSessions
) -> Response[Any]:
    if not login.session.admin:
        return Redirect(f"{PREFIX}/", status_code=303)
    tenant_id = str((await request.form()).get("tenant_id") or "")
    with system_scope("console admin: tenants"):
        tenant = await ctx.management.get_tenant(tenant_id)
    if tenant is None:
        return render(request, "error.html", status=404, status_code=404, detail="no such tenant")
    await sessions.choose_tenant(login.token, tenant.id)
    return Redirect(f"{PREFIX}/", status_code=303)
