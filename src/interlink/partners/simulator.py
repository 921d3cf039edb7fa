"""A simulated partner on loopback: an OAuth2 token endpoint, a small bookings REST API, and the
signed webhooks it sends for every change of its bookings.

Real HTTP, so the token manager and the partner client are tested (and demonstrated) against
something that behaves like a partner: tokens that expire, refresh tokens that rotate, an API
that wants a valid bearer token — and that can be told to fail, slow down, go away entirely
(connection refused) and come back. It counts what it is asked, so a test can say "exactly one
refresh".

Its webhook side (:meth:`PartnerSimulator.send_changes`): bookings live the legal lifecycles of
``partners/booking_story.py`` in the ``pms_alpha`` shape; the partner's state moves first, then
each change's webhook is sent — signed in the source's scheme (``partners/webhook_sender.py``,
the demo partner's code too) — or dropped, duplicated, reordered or delayed as its ``Faults``
say, all recorded in :attr:`PartnerSimulator.sent`. ``GET /bookings?updated_since=…`` lists the
current state of what changed since, a page at a time, for reconciliation.

Runnable: ``python -m interlink.partners.simulator --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import random
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from aiohttp import web

from interlink.partners.booking_story import Change, Faults, Plan, plan_sends
from interlink.partners.webhook_sender import WebhookPoster, WebhookSigner

__all__ = ["ApiMode", "PartnerSimulator", "Sent"]

PAGE_LIMIT = 100
NO_FAULTS = Faults()
MAX_PAGE_LIMIT = 500


class Sent(msgspec.Struct, frozen=True):
    """One webhook request the simulator made, and Interlink's answer."""

    webhook_id: str
    booking_id: str
    revision: int
    duplicate: bool
    status: int | None


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
        self.sent: list[Sent] = []  # every webhook request, in the order made
        self.plans: list[Plan] = []  # what each send_changes planned: drops, shuffles
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

    def apply(self, change: Change) -> dict[str, Any]:
        """The partner's state moves: the booking becomes the change's reservation."""
        now = time.time()
        modified = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")
        return self.add_booking(change.booking_id, **change.reservation, modified_at=modified)

    async def send_changes(
        self,
        ingest_url: str,
        signer: WebhookSigner,
        changes: list[Change],
        faults: Faults = NO_FAULTS,
        *,
        seed: int = 0,
        id_prefix: str = "sim-",
    ) -> Plan:
        """Applies ``changes`` to the partner's state, then sends their webhooks as ``faults``
        plan it (seeded), one at a time; the answers are in :attr:`sent`."""
        for change in changes:
            self.apply(change)
        plan = plan_sends(random.Random(seed), changes, faults, id_prefix)
        self.plans.append(plan)
        async with WebhookPoster(ingest_url, signer) as poster:
            for send in plan.sends:
                answer = await poster.post(send.webhook_id, _webhook_body(send.change))
                self.sent.append(
                    Sent(
                        send.webhook_id,
                        send.change.booking_id,
                        send.change.revision,
                        send.duplicate,
                        answer.status,
                    )
                )
                if faults.delay:
                    await asyncio.sleep(faults.delay)
        return plan

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
        query = request.query
        try:
            since = float(query.get("updated_since", query.get("since", "0")))
            limit = min(int(query.get("limit", PAGE_LIMIT)), MAX_PAGE_LIMIT)
            after = _cursor(query.get("cursor"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        # Keyset pages over (updated_at, id): a change between two pages moves its booking to
        # a later page rather than making another one skip.
        found = sorted(
            (b for b in self.bookings.values() if b["updated_at"] >= since),
            key=lambda b: (b["updated_at"], b["id"]),
        )
        if after is not None:
            found = [b for b in found if (b["updated_at"], b["id"]) > after]
        page = found[: max(limit, 1)]
        more = len(found) > len(page)
        last = page[-1] if page else None
        next_cursor = f"{last['updated_at']!r}~{last['id']}" if more and last else None
        return web.json_response({"data": page, "next_cursor": next_cursor})

    async def _create_booking(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "create_booking")
        if refused is not None:
            return refused
        body = await request.json()
        booking = self.add_booking(f"bk_{secrets.token_hex(4)}", **body)
        return web.json_response(booking, status=201)


def _cursor(value: str | None) -> tuple[float, str] | None:
    if not value:
        return None
    at, sep, booking_id = value.partition("~")
    if not sep:
        raise ValueError("cursor: not one this API gave")
    return float(at), booking_id


def _webhook_body(change: Change) -> bytes:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return msgspec.json.encode(
        {"event": change.event, "sent_at": sent_at, "reservation": change.reservation}
    )


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


# running it by itself --------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m interlink.partners.simulator",
        description="A simulated PMS partner: OAuth2 token endpoint, bookings API, and signed "
        "webhooks (pms_alpha shape) for every change of its bookings.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8181)
    p.add_argument("--ingest-url", help="the source's URL, http://…/in/src_…; no webhooks if none")
    p.add_argument("--secret", help="the source's signing secret (whsec_… for standard_webhooks)")
    p.add_argument("--scheme", default="standard_webhooks", choices=["standard_webhooks", "hmac"])
    p.add_argument("--bookings", type=int, default=100)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--reorder", type=int, default=0, help="shuffle sends in windows of N")
    p.add_argument("--delay", type=float, default=0.0, help="seconds between sends")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    from interlink.partners.booking_story import interleave, stories

    sim = PartnerSimulator(
        client_id=args.client_id, client_secret=args.client_secret, host=args.host, port=args.port
    )
    await sim.start()
    print(f"partner simulator on {sim.url} (token endpoint {sim.token_url})", flush=True)
    try:
        if args.ingest_url and args.secret:
            rng = random.Random(args.seed)
            changes = interleave(rng, stories(rng, args.bookings))
            faults = Faults(args.drop, args.duplicate, args.reorder, args.delay)
            plan = await sim.send_changes(
                args.ingest_url,
                WebhookSigner(args.secret, args.scheme),
                changes,
                faults,
                seed=args.seed,
            )
            answered = Counter(str(s.status) for s in sim.sent)
            print(
                f"{len(changes)} changes of {args.bookings} bookings: {len(plan.sends)} sent "
                f"({sum(s.duplicate for s in plan.sends)} duplicates, {plan.reordered} "
                f"reordered), {len(plan.dropped)} dropped; answers {dict(answered)}",
                flush=True,
            )
        await asyncio.Event().wait()  # serves the API until interrupted
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_arguments(argv)))


if __name__ == "__main__":
    main()
