"""A tenant's API keys: created by the admin; listed, labelled and revoked by the admin or by
the tenant itself. A key is shown once, when created; lists show its id, label and prefix.

Another tenant's keys are not found (404), whoever asks: a tenant key cannot tell whether
another tenant, or its key, exists.
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.exceptions import NotFoundException

from interlink.api.auth import Principal, require_admin
from interlink.api.context import ApiContext
from interlink.api.params import found, page
from interlink.api.schemas import Listing, iso
from interlink.storage.api_keys import ApiKey

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# A minute at least (less is a typo, not a policy), ten years at most.
ExpiresIn = Annotated[int, msgspec.Meta(ge=60, le=10 * 365 * 24 * 3600)]


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    label: Label | None = None
    expires_in_seconds: ExpiresIn | None = None  # none: the key does not expire


class ApiKeyPatch(msgspec.Struct, forbid_unknown_fields=True):
    label: Label | None  # null removes it


class ApiKeyOut(msgspec.Struct):
    """A key's record; never the key (``prefix`` is its first characters, to tell it apart)."""

    id: str
    tenant_id: str
    label: str | None
    prefix: str
    created_at: str | None
    expires_at: str | None
    last_used_at: str | None  # to the minute
    revoked_at: str | None
    status: str  # active | expired | revoked

    @classmethod
    def of(cls, k: ApiKey, now: float) -> ApiKeyOut:
        status = "active"
        if k.revoked_at is not None:
            status = "revoked"
        elif k.expires_at is not None and k.expires_at <= now:
            status = "expired"
        return cls(
            id=k.id,
            tenant_id=k.tenant_id,
            label=k.label,
            prefix=k.prefix,
            created_at=iso(k.created_at),
            expires_at=iso(k.expires_at),
            last_used_at=iso(k.last_used_at),
            revoked_at=iso(k.revoked_at),
            status=status,
        )


class ApiKeyCreated(msgspec.Struct):
    api_key: str  # shown this once
    key: ApiKeyOut


def _visible(principal: Principal, tenant_id: str) -> None:
    if not principal.is_admin and principal.tenant_id != tenant_id:
        raise NotFoundException(f"no tenant '{tenant_id}'")


class ApiKeyController(Controller):
    path = "/api/v1/tenants/{tenant_id:str}/keys"
    tags = ["tenants"]

    @post(
        "/", summary="Create another API key for a tenant, optionally labelled and expiring (admin)"
    )
    async def create(
        self, tenant_id: str, principal: Principal, ctx: ApiContext, data: ApiKeyIn | None = None
    ) -> ApiKeyCreated:
        require_admin(principal)
        found(await ctx.management.get_tenant(tenant_id), "tenant", tenant_id)
        body = data or ApiKeyIn()
        now = time.time()
        expires_at = None if body.expires_in_seconds is None else now + body.expires_in_seconds
        key, plaintext = await ctx.management.keys.create(tenant_id, body.label, expires_at)
        return ApiKeyCreated(api_key=plaintext, key=ApiKeyOut.of(key, now))

    @get("/", summary="List a tenant's API keys, never the keys themselves (admin, or the tenant)")
    async def list_(
        self,
        tenant_id: str,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Listing:
        _visible(principal, tenant_id)
        found(await ctx.management.get_tenant(tenant_id), "tenant", tenant_id)
        items, nxt = await ctx.management.keys.list_keys(tenant_id, page(limit, cursor))
        now = time.time()
        return Listing([ApiKeyOut.of(k, now) for k in items], nxt)

    @patch("/{key_id:str}", summary="Label an API key (admin, or the tenant)")
    async def label(
        self, tenant_id: str, key_id: str, data: ApiKeyPatch, principal: Principal, ctx: ApiContext
    ) -> ApiKeyOut:
        _visible(principal, tenant_id)
        key = await ctx.management.keys.set_label(tenant_id, key_id, data.label)
        return ApiKeyOut.of(found(key, "API key", key_id), time.time())

    @delete(
        "/{key_id:str}",
        summary="Revoke an API key: refused from now on, by every process (admin, or the tenant)",
    )
    async def revoke(
        self, tenant_id: str, key_id: str, principal: Principal, ctx: ApiContext
    ) -> None:
        _visible(principal, tenant_id)
        if not await ctx.management.keys.revoke(tenant_id, key_id):
            raise NotFoundException(f"no live API key '{key_id}'")
