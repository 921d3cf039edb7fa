"""Fetches what a thin notification points at, through the partner API client and the tenant's
OAuth connection to that partner (the adapter of partners/hydration.py).

Never from the client's last-known-good fallback: a stale copy may predate the very change the
notification announces, and the canonical event made of it would carry that notification's
idempotency key — the right state would then never be delivered. A fetch that cannot be done
now fails, and the event waits in the quarantine (stage ``fetch_failed``) for its retry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

from interlink.domain import circuit_breaker as breaker
from interlink.domain.models import Event
from interlink.partners.client import ClientPolicy, PartnerCallFailed, PartnerClient
from interlink.partners.hydration import Fetch, PartnerApi, fetches, hydrated
from interlink.partners.kit import PartnerKit
from interlink.partners.outbound import PartnerSession
from interlink.partners.tokens import TokenManager, UnknownConnection

# The stage waits for these calls while the router waits for the stage: shorter than a client's
# default, so a slow partner costs the other sources seconds, not half a minute.
FETCH_POLICY = ClientPolicy(timeout_seconds=5.0, connect_timeout_seconds=2.0)


class FetchFailed(Exception):
    """The resource could not be had now; the reason says why (never a secret)."""


class Fetcher:
    def __init__(
        self,
        session: PartnerSession,
        tokens: TokenManager,
        *,
        base_urls: Mapping[str, str] | None = None,
        policy: ClientPolicy = FETCH_POLICY,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._base_urls = dict(base_urls or {})  # kit name -> the API's base URL here
        self._policy = policy
        self._clients: dict[str, PartnerClient] = {}

    def client(self, kit: PartnerKit, api: PartnerApi) -> PartnerClient:
        """One client per kit in this process: one breaker and rate limit per partner."""
        client = self._clients.get(kit.name)
        if client is None:
            base_url = self._base_urls.get(kit.name, api.base_url)
            client = PartnerClient(
                kit.name, base_url, self._session, tokens=self._tokens, policy=self._policy
            )
            self._clients[kit.name] = client
        return client

    def blocked_until(self, kit: PartnerKit) -> float | None:
        """While the partner's breaker turns calls away: when to ask again (None: it does not)."""
        client = self._clients.get(kit.name)
        if client is None:
            return None
        until = breaker.denied_until(client.breaker, client.policy.breaker)
        return until if until is not None and until > time.time() else None

    async def hydrate(self, kit: PartnerKit, raw: Event, payload: Any) -> Any:
        """The payload with what the notification points at (NotificationError, FetchFailed)."""
        api = kit.api
        if api is None:
            return payload
        plan = fetches(api, raw.type, payload)
        if not plan:
            return payload
        partner = api.partner or kit.name
        found = await self._tokens.connections.for_partner(raw.tenant_id, partner)
        if len(found) != 1:
            how = "no" if not found else f"{len(found)}"
            raise FetchFailed(
                f"the tenant has {how} connection(s) to partner '{partner}' "
                "(one is needed to fetch what the notification points at)"
            )
        client = self.client(kit, api)
        bodies = [(fetch, await self._get(client, fetch, found[0])) for fetch in plan]
        return hydrated(payload, bodies)

    async def _get(self, client: PartnerClient, fetch: Fetch, connection_id: str) -> Any:
        try:
            answer = await client.get(fetch.path, connection_id=connection_id, fallback=False)
        except (PartnerCallFailed, UnknownConnection) as exc:
            raise FetchFailed(f"GET {fetch.path}: {exc}") from None
        if answer.status != 200:
            raise FetchFailed(f"GET {fetch.path}: the partner answered {answer.status}")
        try:
            body = msgspec.json.decode(answer.body)
        except msgspec.DecodeError:
            raise FetchFailed(f"GET {fetch.path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise FetchFailed(f"GET {fetch.path}: the answer is not a JSON object")
        return body
