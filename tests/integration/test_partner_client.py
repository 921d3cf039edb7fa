"""The partner API client against the simulated partner over loopback: timeouts, the breaker
failing calls fast while the partner is down, stale answers from the last known good one, the
recovery by itself, retries only where they are safe, Retry-After, 401 and rate limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from tests.integration.test_connections import LOOPBACK

from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.domain.circuit_breaker import BreakerPolicy, BreakerStatus
from interlink.domain.rate_limit import RateLimit
from interlink.domain.retry import RetryPolicy
from interlink.domain.token_refresh import ConnectionFlow
from interlink.partners.client import (
    CircuitOpen,
    ClientPolicy,
    PartnerAuthFailed,
    PartnerClient,
    PartnerRateLimited,
    PartnerUnavailable,
)
from interlink.partners.oauth import TokenEndpoint
from interlink.partners.outbound import PartnerSession
from interlink.partners.simulator import PartnerSimulator
from interlink.partners.tokens import TokenManager
from interlink.storage import migrate
from interlink.storage.connections import Connections
from interlink.storage.database import Database
from interlink.storage.management import Management
from interlink.storage.secrets_box import SecretBox

TIMEOUT = 0.3  # for the test that measures it; the others leave room for a loaded machine
POLICY = ClientPolicy(
    timeout_seconds=3.0,
    connect_timeout_seconds=1.0,
    retry=RetryPolicy(schedule=(0.0, 0.05, 0.05), jitter=0.0),
    breaker=BreakerPolicy(
        window_seconds=10.0,
        min_attempts=4,
        failure_ratio=0.5,
        consecutive_connection_errors=3,
        open_seconds=0.5,
        max_open_seconds=2.0,
        probe_lease_seconds=1.0,
        jitter=0.0,
    ),
)


@dataclass
class Setup:
    partner: PartnerSimulator
    client: PartnerClient
    tokens: TokenManager
    connection_id: str
    connections: Connections
    tenant_id: str
    session: PartnerSession


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    url = f"sqlite:///{tmp_path}/client.db"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    tenant, _ = await Management(db, SecretBox([SecretBox.new_key()])).create_tenant("acme")
    partner = PartnerSimulator()
    await partner.start()
    partner.add_booking("bk_1", guest="Ada Lovelace")
    connections = Connections(db, SecretBox([SecretBox.new_key()]))
    session = PartnerSession(LOOPBACK)
    tokens = TokenManager(connections, TokenEndpoint(session))
    connection = await connections.create(
        tenant.id,
        partner="sim",
        flow=ConnectionFlow.CLIENT_CREDENTIALS,
        token_url=partner.token_url,
        client_id=partner.client_id,
        client_secret=partner.client_secret,
        scopes=[],
    )
    await tokens.get_token(connection.id)  # the token is had before the partner goes down
    client = PartnerClient("sim", partner.url, session, tokens=tokens, policy=POLICY)
    yield Setup(partner, client, tokens, connection.id, connections, tenant.id, session)
    await tokens.close()
    await session.close()
    await partner.stop()
    await db.close()


async def timed(call: object) -> float:
    started = time.perf_counter()
    await call  # type: ignore[misc]
    return time.perf_counter() - started


async def test_a_slow_partner_opens_the_breaker_and_then_calls_fail_fast(setup: Setup) -> None:
    s = setup
    client = PartnerClient(
        "sim",
        s.partner.url,
        s.session,
        tokens=s.tokens,
        policy=msgspec.structs.replace(
            POLICY, timeout_seconds=TIMEOUT, connect_timeout_seconds=TIMEOUT
        ),
    )
    good = await client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert good.status == 200 and not good.stale and good.json()["guest"] == "Ada Lovelace"

    s.partner.api_mode = "slow"  # answers after 5 s: every attempt runs into the timeout
    started = time.perf_counter()
    with pytest.raises(PartnerUnavailable, match="timed out") as failure:
        await client.get("/bookings/bk_2", connection_id=s.connection_id)
    closed_seconds = time.perf_counter() - started
    assert not isinstance(failure.value, CircuitOpen)
    assert closed_seconds >= 3 * TIMEOUT  # three attempts, each cut off by the timeout
    assert client.breaker_status is BreakerStatus.OPEN  # after 3 in a row
    requests_before = sum(s.partner.api_requests.values())

    # Open: refused without a request, in well under 5 ms a call.
    calls = 200
    started = time.perf_counter()
    for _ in range(calls):
        with pytest.raises(CircuitOpen):
            await client.get("/bookings/bk_2", connection_id=s.connection_id)
    per_call = (time.perf_counter() - started) / calls
    assert per_call < 0.005, f"{per_call * 1000:.3f} ms a call while open"
    assert sum(s.partner.api_requests.values()) == requests_before
    print(
        f"\nclosed, partner slow: {closed_seconds * 1000:.0f} ms for a call (3 attempts x "
        f"{TIMEOUT * 1000:.0f} ms timeout); open: {per_call * 1e6:.1f} us a call"
    )

    # And with a fallback: the last known good answer, marked stale, as fast.
    started = time.perf_counter()
    for _ in range(calls):
        stale = await client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert (time.perf_counter() - started) / calls < 0.005
    assert stale.stale and stale.age_seconds is not None and stale.age_seconds > 0
    assert stale.body == good.body and stale.status == 200


async def test_a_partner_down_for_a_while_serves_stale_then_recovers_by_itself(
    setup: Setup,
) -> None:
    s = setup
    good = await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    await s.partner.go_down()  # connection refused

    stale = await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert stale.stale and stale.body == good.body
    assert s.client.breaker_status is BreakerStatus.OPEN
    with pytest.raises(CircuitOpen):
        await s.client.get("/bookings/bk_2", connection_id=s.connection_id)  # no fallback

    # After the cool-down, one probe goes through; the partner is still down: open again,
    # for twice as long.
    await asyncio.sleep(0.55)
    stale = await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert stale.stale and s.client.breaker_status is BreakerStatus.OPEN
    assert s.client.breaker.open_count == 2

    await s.partner.come_back()
    await asyncio.sleep(1.05)  # the doubled cool-down
    fresh = await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert not fresh.stale and fresh.age_seconds is None and fresh.status == 200
    assert s.client.breaker_status is BreakerStatus.CLOSED  # the probe succeeded
    again = await s.client.get("/bookings/bk_2", connection_id=s.connection_id)
    assert again.status == 404 and s.client.breaker_status is BreakerStatus.CLOSED


async def test_stale_answers_are_kept_per_connection(setup: Setup) -> None:
    s = setup
    await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    other = await s.connections.create(
        s.tenant_id,
        partner="sim",
        flow=ConnectionFlow.CLIENT_CREDENTIALS,
        token_url=s.partner.token_url,
        client_id=s.partner.client_id,
        client_secret=s.partner.client_secret,
        scopes=[],
    )
    await s.tokens.get_token(other.id)
    await s.partner.go_down()
    # Another connection (another tenant's, say) never gets this one's data.
    with pytest.raises(PartnerUnavailable):
        await s.client.get("/bookings/bk_1", connection_id=other.id)
    assert (await s.client.get("/bookings/bk_1", connection_id=s.connection_id)).stale


async def test_a_post_is_not_retried_unless_it_has_an_idempotency_key(setup: Setup) -> None:
    s = setup
    # A breaker that stays closed here, so every call reaches the partner.
    client = PartnerClient(
        "sim",
        s.partner.url,
        s.session,
        tokens=s.tokens,
        policy=msgspec.structs.replace(POLICY, breaker=BreakerPolicy(min_attempts=100)),
    )
    s.partner.api_mode = "error"
    with pytest.raises(PartnerUnavailable, match="503"):
        await client.request(
            "POST", "/bookings", connection_id=s.connection_id, json={"guest": "Alan Turing"}
        )
    assert s.partner.api_requests["create_booking"] == 1
    with pytest.raises(PartnerUnavailable, match="503"):
        await client.request(
            "POST",
            "/bookings",
            connection_id=s.connection_id,
            json={"guest": "Alan Turing"},
            idempotency_key="op-1",
        )
    assert s.partner.api_requests["create_booking"] == 1 + 3
    with pytest.raises(PartnerUnavailable):
        await client.get("/bookings/bk_1", connection_id=s.connection_id, fallback=False)
    assert s.partner.api_requests["get_booking"] == 3  # GET is idempotent: retried


async def test_retry_after_is_honoured(setup: Setup) -> None:
    s = setup
    s.partner.fail_next, s.partner.retry_after = 1, "1"
    elapsed = await timed(s.client.get("/bookings/bk_1", connection_id=s.connection_id))
    # (asyncio may wake a timer up to its clock resolution early)
    assert elapsed >= 0.95 and s.partner.api_requests["get_booking"] == 2
    # A Retry-After beyond what the client waits for: no retry, at once.
    s.partner.fail_next, s.partner.retry_after = 1, "120"
    started = time.perf_counter()
    with pytest.raises(PartnerUnavailable, match="503"):
        await s.client.get("/bookings/bk_2", connection_id=s.connection_id)
    assert time.perf_counter() - started < 0.5
    assert s.partner.api_requests["get_booking"] == 3


async def test_a_401_refreshes_the_token_once(setup: Setup) -> None:
    s = setup
    s.partner.expire_tokens()  # the partner revoked it before its time
    answer = await s.client.get("/bookings/bk_1", connection_id=s.connection_id)
    assert answer.status == 200
    assert s.partner.token_requests["client_credentials"] == 2
    # Many calls refused at once: one refresh between them.
    s.partner.expire_tokens()
    s.partner.token_delay = 0.1
    answers = await asyncio.gather(
        *(s.client.get("/bookings/bk_1", connection_id=s.connection_id) for _ in range(20))
    )
    assert all(a.status == 200 and not a.stale for a in answers)
    assert s.partner.token_requests["client_credentials"] == 3
    s.partner.token_delay = 0.0
    s.partner.accept_tokens = False
    with pytest.raises(PartnerAuthFailed, match="401"):
        await s.client.get("/bookings/bk_1", connection_id=s.connection_id, fallback=False)
    assert s.partner.token_requests["client_credentials"] == 4  # one refresh, then it failed


async def test_the_rate_limit_spaces_calls_and_refuses_long_waits(setup: Setup) -> None:
    s = setup
    session = PartnerSession(LOOPBACK)
    try:
        limited = PartnerClient(
            "sim",
            s.partner.url,
            session,
            tokens=s.tokens,
            policy=ClientPolicy(rate_limit=RateLimit(rate=10, burst=1), max_rate_wait_seconds=1),
        )
        elapsed = await timed(
            asyncio.gather(
                *(limited.get("/bookings/bk_1", connection_id=s.connection_id) for _ in range(5))
            )
        )
        assert elapsed >= 0.38  # 5 calls at 10/s with a burst of 1: four waits of 0.1 s
        strict = PartnerClient(
            "sim",
            s.partner.url,
            session,
            tokens=s.tokens,
            policy=ClientPolicy(rate_limit=RateLimit(rate=1, burst=1), max_rate_wait_seconds=0.1),
        )
        await strict.get("/bookings/bk_1", connection_id=s.connection_id)
        with pytest.raises(PartnerRateLimited):
            await strict.get("/bookings/bk_1", connection_id=s.connection_id)
    finally:
        await session.close()


async def test_partner_calls_are_behind_the_ssrf_guard(setup: Setup) -> None:
    session = PartnerSession(OutboundPolicy())  # loopback not allowed
    try:
        client = PartnerClient("sim", setup.partner.url, session, policy=POLICY)
        with pytest.raises(PartnerUnavailable, match="loopback"):
            await client.get("/bookings/bk_1")
        assert setup.partner.api_requests.total() == 0
    finally:
        await session.close()


async def test_a_path_cannot_leave_the_partners_api(setup: Setup) -> None:
    client = PartnerClient("sim", setup.partner.url + "/api", setup.session, policy=POLICY)
    for path in ("http://127.0.0.2:9/steal", "../oauth/token", "a/../../oauth/token"):
        with pytest.raises(ValueError, match="not a path under"):
            await client.get(path, connection_id=setup.connection_id)
    assert setup.partner.api_requests.total() == 0
