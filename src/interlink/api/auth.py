"""Bearer API keys: the admin key (from config) or a tenant key (hashed in the database)."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from interlink.storage.management import Management


class Principal(msgspec.Struct, frozen=True):
    tenant_id: str | None  # None: the admin

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


async def authenticate(
    request: Request[Any, Any, Any], admin_key: str, management: Management
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
    token = token.strip()
    if hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(tenant_id=None)
    tenant_id = await management.tenant_for_key(token)
    if tenant_id is None:
        raise NotAuthorizedException("the API key is not valid")
    return Principal(tenant_id=tenant_id)


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDeniedException("this needs the admin key")


def require_tenant(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise PermissionDeniedException(
            "tenant resources need a tenant's API key (create one with POST /api/v1/tenants)"
        )
    return principal.tenant_id
