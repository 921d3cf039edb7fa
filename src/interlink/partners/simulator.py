"""A simulated partner on loopback: an OAuth2 token endpoint and a small bookings REST API.

Real HTTP, so the token manager and the partner client are tested (and demonstrated) against
something that behaves like a partner: tokens that expire, refresh tokens that rotate, an API
that wants a valid bearer token — and that can be told to fail, slow down, go away entirely
(connection refused) and come back. It counts what it is asked, so a test can say "exactly one
refresh".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections import Counter
from typing import Any, Literal

from aiohttp import web

__all__ = ["ApiMode", "PartnerSimulator"]

ApiMode = Literal["up", "error", "slow"]


class PartnerSimulator:
    def __init__(
        self,
        *,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",  # noqa: S107 - a simulator's fixed credentials
        token_lifetime: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.host, self.port = host, port
        # What it was asked: token requests by grant type, API requests by route.
        self.token_requests: Counter[str] = Counter()
        self.api_requests: Counter[str] = Counter()
        # How it behaves. token_failure: answer every token request with this status instead.
        self.token_failure: int | None = None
        self.token_delay = 0.0
        self.api_mode: ApiMode = "up"
        self.slow_seconds = 5.0
        self.error_status = 503
        self.retry_after: str | None = None  # sent with error answers
        self.fail_next = 0  # this many next API requests get error_status, whatever the mode
        self.accept_tokens = True  # False: every bearer token is refused (401)
        self.bookings: dict[str, dict[str, Any]] = {}
        self._access: dict[str, float] = {}  # access token -> expires at
        self._refresh: set[str] = set()
        self._codes: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/bookings", self._list_bookings)
        app.router.add_post("/bookings", self._create_booking)
        app.router.add_get("/bookings/{booking_id}", self._get_booking)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def go_down(self) -> None:
        """Stops listening and drops open connections: requests now fail, connection refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = None if self._runner is None else self._runner.server
        for handler in [] if server is None else server.connections:
            handler.force_close()

    async def come_back(self) -> None:
        if self._site is None:
            await self._listen()

    async def stop(self) -> None:
        await self.go_down()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # data --------------------------------------------------------------------------------------

    def add_booking(self, booking_id: str, **fields: Any) -> dict[str, Any]:
        booking = {"id": booking_id, "updated_at": time.time(), **fields}
        self.bookings[booking_id] = booking
        return booking

    def issue_code(self) -> str:
        """An authorization code, as the partner's consent page would redirect with."""
        code = secrets.token_urlsafe(16)
        self._codes.add(code)
        return code

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (a partner-side revocation)."""
        self._access.clear()

    # the token endpoint ------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        self.token_requests[grant] += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_failure is not None:
            if self.token_failure >= 500:
                return web.Response(status=self.token_failure, text="token service unavailable")
            return _oauth_error(self.token_failure, "invalid_client", "client refused")
        if not self._client_ok(request.headers.get("Authorization", "")):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if grant == "client_credentials":
            return self._issue(refresh=False)
        if grant == "refresh_token":
            token = str(form.get("refresh_token", ""))
            if token not in self._refresh:
                return _oauth_error(400, "invalid_grant", "unknown or used refresh token")
            self._refresh.discard(token)  # rotated: each refresh token works once
            return self._issue(refresh=True)
        if grant == "authorization_code":
            code = str(form.get("code", ""))
            if code not in self._codes:
                return _oauth_error(400, "invalid_grant", "unknown or used code")
            self._codes.discard(code)
            return self._issue(refresh=True)
        return _oauth_error(400, "unsupported_grant_type", f"grant {grant[:40]!r}")

    def _client_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(
            f"{client_id}:{secret}", f"{self.client_id}:{self.client_secret}"
        )

    def _issue(self, *, refresh: bool) -> web.Response:
        access = "sim_at_" + secrets.token_urlsafe(24)
        self._access[access] = time.time() + self.token_lifetime
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        if refresh:
            body["refresh_token"] = "sim_rt_" + secrets.token_urlsafe(24)
            self._refresh.add(body["refresh_token"])
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    def grant_refresh_token(self) -> str:
        """A refresh token as a completed authorization would have left with the client."""
        token = "sim_rt_" + secrets.token_urlsafe(24)
        self._refresh.add(token)
        return token

    # the API -----------------------------------------------------------------------------------

    async def _guard(self, request: web.Request, route: str) -> web.Response | None:
        """An answer that is not the route's own (down, slow, unauthorized), or None."""
        self.api_requests[route] += 1
        if self.api_mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.api_mode == "error" or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response(
                {"error": "unavailable"}, status=self.error_status, headers=headers
            )
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = self._access.get(token) if scheme.lower() == "bearer" else None
        if expires is None or time.time() >= expires or not self.accept_tokens:
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return None

    async def _get_booking(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "get_booking")
        if refused is not None:
            return refused
        booking = self.bookings.get(request.match_info["booking_id"])
        if booking is None:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(booking)

    async def _list_bookings(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "list_bookings")
        if refused is not None:
            return refused
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be epoch seconds"}, status=400)
        found = [b for b in self.bookings.values() if b["updated_at"] >= since]
        return web.json_response({"data": sorted(found, key=lambda b: b["updated_at"])})

    async def _create_booking(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "create_booking")
        if refused is not None:
            return refused
        body = await request.json()
        booking = self.add_booking(f"bk_{secrets.token_hex(4)}", **body)
        return web.json_response(booking, status=201)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
