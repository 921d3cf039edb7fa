"""The console's plumbing: its session middleware, CSRF check, pages and security headers.

A request to ``/console`` is served in its session's tenant scope, exactly as an API request is
in its key's (api/auth.py): the storage calls the pages make are the API's, and PostgreSQL's
row-level security shows them that tenant's rows only. The session is found by its cookie
before any handler runs; without one, a page redirects to the login form.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from interlink.api.params import instant
from interlink.storage.console_sessions import ConsoleSessions, Session
from interlink.storage.tenancy import no_scope, tenant_scope

PREFIX = "/console"
COOKIE = "interlink_console"
# Before login there is no session to derive a CSRF token from: the login form's token is a
# random value also set as a cookie (double submit), which another site can neither read nor set.
LOGIN_COOKIE = "interlink_console_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_LOGIN = "interlink.console.login"
# Reachable without a session: the login form and the static assets.
_PUBLIC = (f"{PREFIX}/login", f"{PREFIX}/static/")
# Reachable by an admin who has not picked a tenant yet.
_NO_TENANT = (f"{PREFIX}/tenants", f"{PREFIX}/logout")

HEADERS = {
    # Only Interlink's own scripts and styles (no inline ones): an injected tag runs nothing.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("interlink.console", "templates"),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class Login(msgspec.Struct, frozen=True):
    """The request's session and the token its cookie holds (the CSRF token derives from it)."""

    session: Session
    token: str

    @property
    def csrf(self) -> str:
        return self.session.csrf_token(self.token)

    @property
    def tenant_id(self) -> str:
        if self.session.tenant_id is None:  # the middleware sends such a session to /tenants
            raise PermissionDeniedException("pick a tenant first")
        return self.session.tenant_id


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name and v:
                    return v
    return None


def _htmx(scope: Scope) -> bool:
    return any(k == b"hx-request" for k, _ in scope.get("headers", ()))


async def _redirect(send: Send, scope: Scope, location: str) -> None:
    # htmx follows HX-Redirect with a full page load; a plain browser follows a 303.
    status, header = (200, b"hx-redirect") if _htmx(scope) else (303, b"location")
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [(header, location.encode()), (b"cache-control", b"no-store")],
    }
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(start)
    await send(body)


class ConsoleMiddleware:
    """Finds the session of a console request and runs the request in its tenant's scope."""

    def __init__(self, app: ASGIApp, sessions: Callable[[], ConsoleSessions]) -> None:
        # A getter, not the store: Litestar deep-copies a router's middleware arguments.
        self._app, self._sessions = app, sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        token = _cookie(scope, COOKIE)
        session = None if token is None else await self._sessions.find(token, time.time())
        login = None if session is None or token is None else Login(session, token)
        scope.setdefault("state", {})[_LOGIN] = login
        public = path.startswith(_PUBLIC)
        if login is None and not public:
            await _redirect(send, scope, f"{PREFIX}/login")
            return
        tenant_id = None if login is None else login.session.tenant_id
        if login is not None and tenant_id is None and not public and path not in _NO_TENANT:
            await _redirect(send, scope, f"{PREFIX}/tenants")
            return
        with no_scope() if tenant_id is None else tenant_scope(tenant_id):
            await self._app(scope, receive, send)


def login_of(request: Request[Any, Any, Any]) -> Login:
    """The request's session (a dependency of every page behind the login)."""
    login = request.scope.get("state", {}).get(_LOGIN)
    if not isinstance(login, Login):
        raise PermissionDeniedException("log in first")
    return login


def maybe_login(request: Request[Any, Any, Any]) -> Login | None:
    login = request.scope.get("state", {}).get(_LOGIN)
    return login if isinstance(login, Login) else None


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Every request that changes something carries the session's CSRF token (a form field, or
    htmx's header); a request without it is refused with a 403 before its handler runs."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    login = maybe_login(request)
    if request.url.path == f"{PREFIX}/login":
        expected = request.cookies.get(LOGIN_COOKIE)
    else:
        expected = None if login is None else login.csrf
    sent = request.headers.get(CSRF_HEADER) or (await request.form()).get(CSRF_FIELD) or ""
    if not expected or not hmac.compare_digest(str(sent).encode(), expected.encode()):
        raise PermissionDeniedException(
            "the form's CSRF token is missing or wrong: reload the page"
        )


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def session_cookie(request: Request[Any, Any, Any], name: str, value: str, max_age: int) -> Cookie:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it), and
    Secure when the console is reached over HTTPS; scoped to the console's paths."""
    return Cookie(
        key=name,
        value=value,
        path=PREFIX,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def render(
    request: Request[Any, Any, Any],
    template: str,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    **values: Any,
) -> Response[str]:
    login = maybe_login(request)
    body = templates.get_template(template).render(
        login=login,
        csrf=values.pop("csrf", None) or (login.csrf if login is not None else ""),
        path=request.url.path,
        **values,
    )
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=HEADERS,
        cookies=cookies or [],
    )


def on_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    """The console's errors are pages (a 404 for another tenant's id, as in the API)."""
    status = exc.status_code
    detail = str(exc.detail) if status < 500 else "something went wrong"
    return render(request, "error.html", status=status, status_code=status, detail=detail)


def query(request: Request[Any, Any, Any], *names: str) -> dict[str, str]:
    """The non-empty query parameters among ``names`` (a search form's fields)."""
    params: Mapping[str, Any] = request.query_params
    return {n: str(params[n]).strip() for n in names if str(params.get(n) or "").strip()}


def not_found(kind: str, ident: str) -> NotFoundException:
    return NotFoundException(f"no {kind} '{ident}'")


def when(name: str, value: str | None) -> float | None:
    """A search form's time: RFC 3339, or a browser's ``datetime-local`` (no zone), read as
    UTC, as the pages show every time."""
    if not value:
        return None
    if len(value) in (16, 19) and value[10:11] == "T":  # 2026-01-01T10:00[:00]
        value += "Z"
    return instant(name, value)


def shown_time(epoch: float | None) -> str:
    """An epoch time as the pages show it: UTC to the second."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


templates.filters["time"] = shown_time
