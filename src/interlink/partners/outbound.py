"""The one aiohttp session every request to a partner (its token endpoint, its API) goes through.

Partner URLs come from tenants just as endpoint URLs do, so the same SSRF guard applies
(delivery/outbound_guard.py): IP literals are checked before a request, and every address a
name resolves to is checked by the resolver the socket connects through.
"""

from __future__ import annotations

import aiohttp

from interlink.delivery.outbound_guard import GuardedResolver, OutboundPolicy

_DNS_CACHE_TTL_S = 10  # results passed the guard; a short TTL still follows a partner's moves


class PartnerSession:
    """Made lazily, on the running loop: aiohttp sessions belong to one."""

    def __init__(
        self, policy: OutboundPolicy, *, max_connections: int = 100, user_agent: str = "Interlink"
    ) -> None:
        self.policy = policy
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._resolver = GuardedResolver(self.policy)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=self._resolver,
                    limit=self._max_connections,
                    ttl_dns_cache=_DNS_CACHE_TTL_S,
                ),
                headers={"User-Agent": self._user_agent},
                # A proxy from the environment would be the only address the guard sees.
                trust_env=False,
                # A partner's cookies must never be replayed to it or to another tenant's call.
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()  # TCPConnector closes only resolvers it made itself
