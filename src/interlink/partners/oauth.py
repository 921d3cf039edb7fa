"""Token requests to a partner's OAuth2 token endpoint (RFC 6749 §4.1.3, §4.4, §6).

Authlib composes the requests (the grant's form body, the client's authentication); they are
sent through the guarded partner session (partners/outbound.py), not Authlib's own httpx
client, so a token URL gets the same SSRF guard and the same aiohttp stack as every other
outbound request. Errors say what went wrong without the secret or the token.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgspec
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from yarl import URL

from interlink.delivery.outbound_guard import BlockedDestination, check_url
from interlink.domain.token_refresh import ConnectionFlow
from interlink.partners.outbound import PartnerSession
from interlink.storage.connections import Connection

_DESCRIPTION_CHARS = 200
_MAX_RESPONSE_BYTES = 64 * 1024


class TokenRequestFailed(Exception):
    """The token endpoint did not issue a token; the message is safe to store and show."""


class IssuedToken(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str | None  # None: keep the one held (the partner did not rotate it)
    expires_in: float | None


class TokenEndpoint:
    def __init__(self, session: PartnerSession, *, timeout_seconds: float = 10.0) -> None:
        self._session = session
        self._timeout = timeout_seconds

    async def renew(self, connection: Connection) -> IssuedToken:
        """A new access token for the connection: the client-credentials grant again, or the
        refresh-token grant for an authorization-code connection."""
        scope = list(connection.scopes) or None
        if connection.flow is ConnectionFlow.CLIENT_CREDENTIALS:
            body = prepare_token_request("client_credentials", scope=scope)
        else:
            if connection.refresh_token is None:
                raise TokenRequestFailed(
                    "no refresh token: authorize the connection again (authorization_code)"
                )
            body = prepare_token_request(
                "refresh_token", refresh_token=connection.refresh_token.reveal(), scope=scope
            )
        return await self._request(
            connection.token_url, connection.client_id, connection.client_secret.reveal(), body
        )

    async def exchange_code(
        self, connection: Connection, code: str, redirect_uri: str | None
    ) -> IssuedToken:
        """The authorization code a user's consent produced, exchanged for the first tokens."""
        body = prepare_token_request("authorization_code", redirect_uri=redirect_uri, code=code)
        return await self._request(
            connection.token_url, connection.client_id, connection.client_secret.reveal(), body
        )

    async def _request(
        self, token_url: str, client_id: str, client_secret: str, body: str
    ) -> IssuedToken:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
            "Accept": "application/json",
        }
        url, headers, body = ClientAuth(client_id, client_secret, "client_secret_basic").prepare(
            "POST", token_url, headers, body
        )
        try:
            target = URL(url)
            check_url(target, self._session.policy)
        except (BlockedDestination, ValueError) as exc:
            raise TokenRequestFailed(f"token endpoint refused: {exc}") from None
        try:
            async with self._session.get().post(
                target,
                data=body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                status = response.status
                raw = await response.content.read(_MAX_RESPONSE_BYTES)
        except BlockedDestination as exc:
            raise TokenRequestFailed(f"token endpoint refused: {exc}") from None
        except TimeoutError:
            raise TokenRequestFailed(
                f"token endpoint timed out after {self._timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TokenRequestFailed(f"token endpoint unreachable: {type(exc).__name__}") from None
        return _parse(status, raw)


def _parse(status: int, raw: bytes) -> IssuedToken:
    try:
        payload: Any = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise TokenRequestFailed(f"token endpoint answered {status} without a JSON object")
    if "error" in payload or not 200 <= status < 300:
        # RFC 6749 §5.2: error, and optionally a human-readable description.
        error = str(payload.get("error") or f"HTTP {status}")[:_DESCRIPTION_CHARS]
        description = payload.get("error_description")
        detail = f": {str(description)[:_DESCRIPTION_CHARS]}" if description else ""
        raise TokenRequestFailed(f"token endpoint answered {status} {error}{detail}")
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenRequestFailed("token endpoint answered without an access_token")
    token_type = str(payload.get("token_type") or "bearer")
    if token_type.lower() != "bearer":
        raise TokenRequestFailed(f"token type {token_type[:40]!r} is not supported (bearer only)")
    refresh_token = payload.get("refresh_token")
    expires_in = payload.get("expires_in")
    try:
        lifetime = None if expires_in is None else float(expires_in)
    except (TypeError, ValueError):
        lifetime = None
    return IssuedToken(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_in=lifetime,
    )
