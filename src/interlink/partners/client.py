"""The partner API client: how Interlink calls a partner's REST API without being taken down by it.

One client per partner (per process). Each call goes through, in order:

* the partner's rate limit (a token bucket, domain/rate_limit.py): a short wait, or a refusal;
* the partner's circuit breaker (domain/circuit_breaker.py, the same rules as delivery's): while
  it is open a call fails at once — or answers from the fallback — without touching the network;
  after the cool-down one probe goes through, and its success closes the breaker again;
* the SSRF guard (partners/outbound.py) and connect/total timeouts;
* a bearer token from the token manager, when the call is made for a connection (refreshed once
  on a 401, then the call fails);
* retries with backoff and jitter, honouring ``Retry-After`` — only for idempotent methods
  (GET, HEAD, PUT, DELETE, OPTIONS), and for a POST only when it carries an idempotency key.

A successful GET made with ``fallback=True`` is kept as the last known good answer for that
(connection, path, query); when the partner is down or the breaker is open, that answer is
served again marked ``stale`` with its age.

The breaker, the bucket and the cache live in this process's memory: each process judges the
partner by what it sees itself, which is enough to fail fast; they are not shared through the
database as the delivery breaker is.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
import structlog
from yarl import URL

from interlink.delivery.outbound_guard import BlockedDestination, check_url
from interlink.domain import circuit_breaker as breaker
from interlink.domain.circuit_breaker import BreakerOutcome, BreakerPolicy, BreakerStatus
from interlink.domain.rate_limit import RateLimit, TokenBucket, full_bucket, take
from interlink.domain.retry import RetryPolicy
from interlink.domain.retry_after import parse_retry_after
from interlink.partners.outbound import PartnerSession
from interlink.partners.tokens import TokenManager, TokenUnavailable

log = structlog.get_logger("interlink.partners")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Answers that say "not now" rather than "no": worth another try, and count against the partner.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class PartnerCallFailed(Exception):
    def __init__(self, partner: str, reason: str) -> None:
        super().__init__(f"{partner}: {reason}")
        self.partner = partner
        self.reason = reason


class PartnerUnavailable(PartnerCallFailed):
    """The partner is down, too slow, erroring, or its breaker is open; no fallback answer."""


class CircuitOpen(PartnerUnavailable):
    """Refused without a request: the partner's breaker is open."""


class PartnerRateLimited(PartnerCallFailed):
    """The partner's rate limit would make this call wait longer than allowed."""


class PartnerAuthFailed(PartnerCallFailed):
    """401 again with a fresh token, or no token could be had."""


class PartnerResponse(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str | None = None
    stale: bool = False  # served from the last known good answer, not from the partner now
    age_seconds: float | None = None  # how old a stale answer is

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class ClientPolicy(msgspec.Struct, frozen=True):
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    # The first try and two more, 0.2 s and 1 s later (± half).
    retry: RetryPolicy = RetryPolicy(schedule=(0.0, 0.2, 1.0), jitter=0.5)
    # A Retry-After longer than this is not waited for: the call fails (or falls back) instead.
    max_retry_after_seconds: float = 30.0
    breaker: BreakerPolicy = BreakerPolicy(
        window_seconds=60.0,
        min_attempts=10,
        failure_ratio=0.5,
        consecutive_connection_errors=5,
        open_seconds=15.0,
        max_open_seconds=300.0,
        probe_lease_seconds=30.0,
    )
    rate_limit: RateLimit | None = None
    max_rate_wait_seconds: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024
    fallback_entries: int = 1000


_CacheKey = tuple[str | None, str, tuple[tuple[str, str], ...]]


class PartnerClient:
    def __init__(
        self,
        partner: str,
        base_url: str,
        session: PartnerSession,
        *,
        tokens: TokenManager | None = None,
        policy: ClientPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.partner = partner
        # Paths are joined under the base URL, so it names a directory.
        self.base_url = URL(base_url if base_url.endswith("/") else base_url + "/")
        self._session = session
        self._tokens = tokens
        self.policy = policy or ClientPolicy()
        self._rng = rng or random.Random()
        self.breaker = breaker.CLOSED
        limit = self.policy.rate_limit
        self._bucket: TokenBucket | None = (
            None if limit is None else full_bucket(limit, time.time())
        )
        self._fallbacks: OrderedDict[_CacheKey, tuple[PartnerResponse, float]] = OrderedDict()

    @property
    def breaker_status(self) -> BreakerStatus:
        return self.breaker.state

    async def get(
        self,
        path: str,
        *,
        connection_id: str | None = None,
        params: Mapping[str, str] | None = None,
        fallback: bool = True,
    ) -> PartnerResponse:
        return await self.request(
            "GET", path, connection_id=connection_id, params=params, fallback=fallback
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        connection_id: str | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        fallback: bool = False,
    ) -> PartnerResponse:
        """The partner's answer (any status but 401 and the retryable ones, which raise).

        Raises :class:`PartnerUnavailable` (or :class:`CircuitOpen`), :class:`PartnerRateLimited`
        or :class:`PartnerAuthFailed`; with ``fallback`` a GET answers from its last known good
        answer instead of raising ``PartnerUnavailable``.
        """
        method = method.upper()
        query = tuple(sorted((params or {}).items()))
        key: _CacheKey | None = (
            (connection_id, path, query) if fallback and method == "GET" else None
        )
        url = self.base_url.join(URL(path.lstrip("/")))
        if url.origin() != self.base_url.origin() or not url.path.startswith(self.base_url.path):
            # A path must not take a tenant's token to another host (or out of the API).
            raise ValueError(f"{path!r} is not a path under {self.base_url}")
        if query:
            url = url.with_query(query)
        try:
            check_url(url, self._session.policy)
        except BlockedDestination as exc:
            raise PartnerUnavailable(self.partner, str(exc)) from None
        retryable = method in IDEMPOTENT_METHODS or idempotency_key is not None
        budget = self.policy.retry.max_attempts if retryable else 1
        body = None if json is None else jsonlib.dumps(json).encode()
        attempts, reauthorized = 0, False
        while True:
            await self._wait_for_rate()
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if idempotency_key is not None:
                headers["Idempotency-Key"] = idempotency_key
            token = None
            if connection_id is not None:
                try:
                    token = await self._token(connection_id)
                except PartnerAuthFailed as exc:
                    # Its token endpoint is the partner too: no token, no partner.
                    return self._fallback(key, exc)
                headers["Authorization"] = f"Bearer {token}"
            granted, self.breaker = breaker.allow(self.breaker, self.policy.breaker, time.time())
            if not granted:
                return self._fallback(key, CircuitOpen(self.partner, self._open_reason()))
            started = time.time()
            response, error = await self._send(method, url, headers, body)
            attempts += 1
            if response is None:
                self._record(started, BreakerOutcome.CONNECTION_ERROR)
                retry_in = self._retry_in(attempts, budget, None)
                if retry_in is None:
                    return self._fallback(key, PartnerUnavailable(self.partner, error))
                await asyncio.sleep(retry_in)
                continue
            status = response.status
            if status in RETRYABLE_STATUSES:
                self._record(started, BreakerOutcome.FAILURE)
                retry_after = parse_retry_after(response.retry_after, time.time())
                retry_in = self._retry_in(attempts, budget, retry_after)
                if retry_in is None:
                    failure = PartnerUnavailable(self.partner, f"answered {status}")
                    return self._fallback(key, failure)
                await asyncio.sleep(retry_in)
                continue
            self._record(started, BreakerOutcome.SUCCESS)  # it answered: it is up
            if status == 401 and connection_id is not None and self._tokens is not None:
                if reauthorized:
                    raise PartnerAuthFailed(self.partner, "401 with a freshly refreshed token")
                reauthorized = True
                assert token is not None
                await self._tokens.rejected(connection_id, token)
                attempts -= 1  # the retry with a new token is not one of the budget's
                continue
            answer = response.answer
            if key is not None and 200 <= status < 300:
                self._remember(key, answer)
            return answer

    # the parts of a call -----------------------------------------------------------------------

    async def _wait_for_rate(self) -> None:
        limit = self.policy.rate_limit
        if limit is None or self._bucket is None:
            return
        waited = 0.0
        while True:
            granted, self._bucket, wait = take(self._bucket, limit, time.time())
            if granted:
                return
            if waited + wait > self.policy.max_rate_wait_seconds:
                raise PartnerRateLimited(
                    self.partner, f"its rate limit ({limit.rate:g} per {limit.per}) is used up"
                )
            waited += wait
            await asyncio.sleep(wait)

    async def _token(self, connection_id: str) -> str:
        if self._tokens is None:
            raise PartnerAuthFailed(self.partner, "a connection was named but no token manager")
        try:
            return await self._tokens.get_token(connection_id)
        except TokenUnavailable as exc:
            raise PartnerAuthFailed(self.partner, str(exc)) from None

    async def _send(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> tuple[_Answered | None, str]:
        timeout = self.policy.timeout_seconds
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(self.policy.connect_timeout_seconds, timeout)
        )
        try:
            async with asyncio.timeout(timeout):
                async with self._session.get().request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=client_timeout,
                ) as response:
                    content = await response.content.read(self.policy.max_body_bytes)
                    return _Answered(
                        PartnerResponse(
                            status=response.status,
                            body=content,
                            content_type=response.headers.get("Content-Type"),
                        ),
                        response.headers.get("Retry-After"),
                    ), ""
        except BlockedDestination as exc:
            return None, str(exc)
        except TimeoutError:
            return None, f"timed out after {timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"unreachable ({type(exc).__name__})"

    def _record(self, started: float, outcome: BreakerOutcome) -> None:
        before = self.breaker.state
        self.breaker = breaker.record(
            self.breaker,
            self.policy.breaker,
            time.time(),
            outcome,
            started_at=started,
            rng=self._rng,
        )
        if self.breaker.state is not before:
            log.info(
                "partner.breaker",
                partner=self.partner,
                state=self.breaker.state.value,
                previous=before.value,
            )

    def _retry_in(self, attempts: int, budget: int, retry_after: float | None) -> float | None:
        """Seconds until the next try, or None: no more tries for this call."""
        if attempts >= budget:
            return None
        if retry_after is not None and retry_after > self.policy.max_retry_after_seconds:
            return None
        return self.policy.retry.next_delay(attempts, retry_after, self._rng)

    def _open_reason(self) -> str:
        retry_at = breaker.denied_until(self.breaker, self.policy.breaker)
        when = f"; next try in {max(0.0, retry_at - time.time()):.1f} s" if retry_at else ""
        return f"circuit breaker {self.breaker.state.value}{when}"

    def _remember(self, key: _CacheKey, answer: PartnerResponse) -> None:
        self._fallbacks[key] = (answer, time.time())
        self._fallbacks.move_to_end(key)
        while len(self._fallbacks) > self.policy.fallback_entries:
            self._fallbacks.popitem(last=False)

    def _fallback(self, key: _CacheKey | None, failure: PartnerCallFailed) -> PartnerResponse:
        kept = None if key is None else self._fallbacks.get(key)
        if kept is None:
            raise failure
        answer, stored_at = kept
        log.info("partner.stale_answer", partner=self.partner, reason=failure.reason)
        return msgspec.structs.replace(
            answer, stale=True, age_seconds=max(0.0, time.time() - stored_at)
        )


class _Answered(msgspec.Struct, frozen=True):
    answer: PartnerResponse
    retry_after: str | None

    @property
    def status(self) -> int:
        return self.answer.status
