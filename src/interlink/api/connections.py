"""OAuth connections to partner APIs: create, inspect, refresh, delete.

The client secret is accepted and never returned; tokens are never shown. A connection's first
token is requested at creation, so a wrong secret or token URL shows at once as ``failed`` with
its ``last_error``.
"""

from __future__ import annotations

import time

from litestar import Controller, delete, get, post
from litestar.exceptions import NotFoundException, ServiceUnavailableException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import Unprocessable, found, page
from interlink.api.schemas import ConnectionIn, ConnectionOut, Listing
from interlink.delivery.outbound_guard import BlockedDestination, check_url
from interlink.domain.token_refresh import ConnectionFlow
from interlink.partners.tokens import TokenManager, UnknownConnection


def _tokens(ctx: ApiContext) -> TokenManager:
    if ctx.tokens is None:
        raise ServiceUnavailableException("connections are not available in this process")
    return ctx.tokens


def _flow(data: ConnectionIn) -> ConnectionFlow:
    flow = data.flow
    if flow is ConnectionFlow.CLIENT_CREDENTIALS:
        if data.refresh_token or data.authorization_code:
            raise Unprocessable("client_credentials takes no refresh_token or authorization_code")
    elif not (data.refresh_token or data.authorization_code):
        raise Unprocessable(
            "authorization_code needs the refresh_token the user's consent gave, "
            "or the authorization_code to exchange"
        )
    elif data.refresh_token and data.authorization_code:
        raise Unprocessable("give a refresh_token or an authorization_code, not both")
    return flow


class ConnectionController(Controller):
    path = "/api/v1/connections"
    tags = ["connections"]

    @post("/", summary="Create an OAuth connection to a partner's API; its first token is fetched")
    async def create(
        self, data: ConnectionIn, principal: Principal, ctx: ApiContext
    ) -> ConnectionOut:
        tenant_id = require_tenant(principal)
        tokens = _tokens(ctx)
        flow = _flow(data)
        for name, url in (("token_url", data.token_url), ("redirect_uri", data.redirect_uri)):
            if url is None:
                continue
            try:
                check_url(url, ctx.outbound)
            except (BlockedDestination, ValueError) as exc:
                raise Unprocessable(f"{name}: {exc}") from None
        connection = await tokens.connections.create(
            tenant_id,
            partner=data.partner,
            flow=flow,
            token_url=data.token_url,
            client_id=data.client_id,
            client_secret=data.client_secret,
            scopes=data.scopes,
            refresh_token=data.refresh_token,
        )
        try:
            if data.authorization_code:
                connection = await tokens.authorize(
                    connection.id, data.authorization_code, data.redirect_uri
                )
            else:
                connection = await tokens.refresh(connection.id)
        except UnknownConnection:  # deleted in the meantime
            raise NotFoundException(f"no connection '{connection.id}'") from None
        return ConnectionOut.of(connection, time.time())

    @get("/", summary="List connections")
    async def list_(
        self, principal: Principal, ctx: ApiContext, limit: int = 50, cursor: str | None = None
    ) -> Listing:
        items, nxt = await _tokens(ctx).connections.list_connections(
            require_tenant(principal), page(limit, cursor)
        )
        now = time.time()
        return Listing([ConnectionOut.of(c, now) for c in items], nxt)

    @get("/{connection_id:str}", summary="Get a connection: status, expiry, refresh counts")
    async def get_(
        self, connection_id: str, principal: Principal, ctx: ApiContext
    ) -> ConnectionOut:
        connection = found(
            await _tokens(ctx).connections.get(require_tenant(principal), connection_id),
            "connection",
            connection_id,
        )
        return ConnectionOut.of(connection, time.time())

    @post(
        "/{connection_id:str}/refresh",
        status_code=200,
        summary="Refresh the token now; the answer shows whether it worked",
    )
    async def refresh(
        self, connection_id: str, principal: Principal, ctx: ApiContext
    ) -> ConnectionOut:
        tokens = _tokens(ctx)
        found(
            await tokens.connections.get(require_tenant(principal), connection_id),
            "connection",
            connection_id,
        )
        try:
            refreshed = await tokens.refresh(connection_id)
        except UnknownConnection:
            raise NotFoundException(f"no connection '{connection_id}'") from None
        return ConnectionOut.of(refreshed, time.time())

    @delete("/{connection_id:str}", summary="Delete a connection and its credentials")
    async def delete_(self, connection_id: str, principal: Principal, ctx: ApiContext) -> None:
        tokens = _tokens(ctx)
        if not await tokens.connections.delete(require_tenant(principal), connection_id):
            raise NotFoundException(f"no connection '{connection_id}'")
        tokens.forget(connection_id)
