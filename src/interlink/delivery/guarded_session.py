"""The only way Interlink gets an outbound HTTP session: pooled, and SSRF-guarded.

Endpoint URLs and partner URLs both come from tenants, so every connection either makes goes
through the same guard (delivery/outbound_guard.py): the resolver the socket connects through
keeps only addresses the policy allows. Deliveries and partner calls build their sessions here,
so a fix to how a session is guarded reaches both.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver

from interlink.delivery.outbound_guard import GuardedResolver, OutboundPolicy

__all__ = ["GuardedSession"]

# Results of a lookup have already passed the guard, so caching them is safe; a short TTL
# still lets receivers and partners move without us pinning a stale address for long.
_DNS_CACHE_TTL_S = 10


class GuardedSession:
    """Made lazily, on the running loop (an aiohttp session belongs to one), and again after
    it was closed."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        max_connections: int,
        user_agent: str,
        headers: Mapping[str, str] | None = None,
        name_service: AbstractResolver | None = None,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self.policy = policy
        self._trace_configs = trace_configs
        self._max_connections = max_connections
        self._headers = {"User-Agent": user_agent, **(headers or {})}
        self._name_service = name_service  # None: the system's; the guard filters either
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._resolver = GuardedResolver(self.policy, self._name_service)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=self._resolver,
                    limit=self._max_connections,
                    ttl_dns_cache=_DNS_CACHE_TTL_S,
                ),
                headers=self._headers,
                # A proxy from the environment would be the only address the guard sees.
                trust_env=False,
                # Cookies set by one host must never be replayed to it or to another tenant's.
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
                trace_configs=self._trace_configs,
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()  # TCPConnector closes only resolvers it made itself
