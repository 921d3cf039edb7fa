"""Bearer API keys: the admin key (from config) or a tenant key (hashed in the database).

The key is checked before the handler runs, by ``TenancyMiddleware``, so that the whole request
(its dependencies, its handler) runs inside the tenancy scope of its key: the tenant's for a
tenant key, the system scope for the admin key (storage/tenancy.py). The database then shows the
request nothing of another tenant (PostgreSQL row-level security).
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from interlink.storage.management import Management
from interlink.storage.tenancy import no_scope, system_scope, tenant_scope


class Principal(msgspec.Struct, frozen=True):
    tenant_id: str | None  # None: the admin
    key_id: str | None = None  # the tenant's API key that authenticated (records say who)

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


async def authenticate(
    request: Request[Any, Any, Any], admin_key: str, management: Management
) -> Principal:
    header = request.headers.get("authorization", "")
    return await authenticate_header(header, admin_key, management)


async def authenticate_header(header: str, admin_key: str, management: Management) -> Principal:
    """The principal of an ``Authorization`` header's key (a WebSocket's too)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
    token = token.strip()
    if hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(tenant_id=None)
    # A key names its tenant, so finding it comes before any tenant: the system scope's one
    # lookup, by the key's hash.
    with system_scope("api key lookup"):
        owner = await management.key_owner(token)
    if owner is None:
        raise NotAuthorizedException("the API key is not valid")
    return Principal(tenant_id=owner[0], key_id=owner[1])


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDeniedException("this needs the admin key")


def require_tenant(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise PermissionDeniedException(
            "tenant resources need a tenant's API key (create one with POST /api/v1/tenants)"
        )
    return principal.tenant_id


_PRINCIPAL = "interlink.principal"


class TenancyMiddleware:
    """Authenticates a request that carries a key and runs it in that key's tenancy scope.

    A request without a key (or with a bad one) runs in no scope; the handlers that need a
    principal then refuse it (``principal``), and the others (health, docs) answer as before.
    """

    def __init__(self, app: ASGIApp, admin_key: str, management: Management) -> None:
        self._app, self._admin_key, self._management = app, admin_key, management

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope)
        outcome: Principal | NotAuthorizedException
        try:
            outcome = await authenticate(request, self._admin_key, self._management)
        except NotAuthorizedException as exc:
            outcome = exc
        scope.setdefault("state", {})[_PRINCIPAL] = outcome
        entered = no_scope()
        if isinstance(outcome, Principal):
            entered = (
                system_scope("admin API")
                if outcome.tenant_id is None
                else tenant_scope(outcome.tenant_id)
            )
        with entered:
            await self._app(scope, receive, send)


def principal(request: Request[Any, Any, Any]) -> Principal:
    """The principal ``TenancyMiddleware`` found for this request, or its refusal."""
    outcome = request.scope.get("state", {}).get(_PRINCIPAL)
    if outcome is None:
        raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
    if isinstance(outcome, NotAuthorizedException):
        raise outcome
    assert isinstance(outcome, Principal)
    return outcome


def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of every resource: a 401 before anything else of the request is read."""
    outcome = connection.scope.get("state", {}).get(_PRINCIPAL)
    if isinstance(outcome, NotAuthorizedException):
        raise outcome
    if not isinstance(outcome, Principal):
        raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
