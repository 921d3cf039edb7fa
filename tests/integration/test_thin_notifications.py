"""A partner of thin notifications (pms_gamma) against the simulated partner over loopback: each
notification's booking is fetched with the tenant's OAuth connection before it is normalized;
while the partner's API is down the notification waits in the quarantine (``fetch_failed``) —
never lost, never normalized from a stale copy, the other sources' events flowing meanwhile —
and is delivered by itself once the API is back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from tests.canary import Sweep
from tests.integration.conftest import Harness, eventually, running, settings_for, signed

from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.retry import RetryPolicy
from interlink.ingress.verifiers.hmac_scheme import sign_hmac
from interlink.partners.client import ClientPolicy
from interlink.partners.fetcher import Fetcher
from interlink.partners.simulator import PartnerSimulator
from interlink.partners.stage import Normalization
from interlink.storage.normalization import NormalizationStore
from interlink.storage.tables import events
from interlink.storage.tenancy import system_scope

CASES = Path(__file__).parents[1] / "contracts" / "pms_gamma"
# Short waits, so a test sees a retry and a breaker's cool-down in seconds.
RETRY = RetryPolicy(schedule=(0.2,) * 200, jitter=0.0)
POLICY = ClientPolicy(
    timeout_seconds=2.0,
    connect_timeout_seconds=1.0,
    retry=RetryPolicy(schedule=(0.0, 0.05), jitter=0.0),
    breaker=BreakerPolicy(
        window_seconds=10.0,
        min_attempts=4,
        failure_ratio=0.5,
        consecutive_connection_errors=3,
        open_seconds=0.5,
        max_open_seconds=1.0,
        probe_lease_seconds=1.0,
        jitter=0.0,
    ),
)


def case(name: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The notification, the booking the partner's API holds, the canonical events expected."""
    folder = CASES / name
    fetched = [json.loads(p.read_text()) for p in folder.glob("fetched/bookings/*.json")]
    return (
        json.loads((folder / "input.json").read_text()),
        fetched[0] if fetched else {},
        json.loads((folder / "expected.json").read_text()).get("events", []),
    )


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep, partner: PartnerSimulator
) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)
    canary.secret(partner.client_secret, "the simulated partner's client secret")
    settings = settings_for(tmp_path, partner_api_urls={"pms_gamma": partner.url})
    async with running(settings, canary) as h:
        stage = h.system.normalization
        stage.fetch_retry = RETRY
        stage.fetcher = Fetcher(
            h.system.partner_session,
            h.system.tokens,
            base_urls=settings.partner_api_urls,
            policy=POLICY,
        )
        yield h


async def gamma(h: Harness, key: str, receiver: Any, partner: PartnerSimulator) -> dict[str, Any]:
    """A pms_gamma source with its OAuth connection, delivering every type to ``receiver``."""
    await connect(h, key, partner)
    source = await h.post(key, "/api/v1/sources", {"name": "gamma", "kit": "pms_gamma"})
    ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    return source


async def connect(h: Harness, key: str, partner: PartnerSimulator) -> None:
    await h.post(
        key,
        "/api/v1/connections",
        {
            "partner": "gamma_stays",  # the kit's [api] partner
            "token_url": partner.token_url,
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
            "scopes": ["bookings:read"],
        },
    )


async def notify(h: Harness, source: dict[str, Any], notification: dict[str, Any]) -> str:
    body = json.dumps(notification).encode()
    config = source["source"]["verifier_config"]
    now = int(time.time())
    headers = {
        "x-gamma-timestamp": str(now),
        "x-gamma-signature": sign_hmac(source["secrets"][0], body, config, timestamp=now),
        "content-type": "application/json",
    }
    r = await h.client.post(f"/in/{source['source']['id']}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def hold(partner: PartnerSimulator, booking: dict[str, Any]) -> None:
    partner.add_booking(booking["id"], **{k: v for k, v in booking.items() if k != "id"})


async def entries(h: Harness, key: str, **params: Any) -> list[dict[str, Any]]:
    r = await h.get(key, "/api/v1/quarantine", **params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_a_thin_notification_is_fetched_then_delivered_as_its_canonical_event(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await gamma(harness, key, receiver, partner)
    assert source["source"]["verifier"] == "hmac"  # the kit's scheme: SHA-512 over ts.body
    kits = (await harness.get(key, "/api/v1/partner-kits")).json()["data"]
    api = next(k for k in kits if k["name"] == "pms_gamma")["api"]
    assert api["partner"] == "gamma_stays"  # what the tenant's connection must name
    assert api["fetch"][0]["path"] == "bookings/{booking_id}"
    for number, name in enumerate(["bookings_create", "bookings_update", "bookings_cancel"], 1):
        notification, booking, want = case(name)
        hold(partner, booking)
        raw_id = await notify(harness, source, notification)
        await eventually(lambda n=number: len(receiver.received) == n)  # type: ignore[misc]
        webhook_id, payload = receiver.received[-1]
        assert (payload["type"], payload["data"]) == (want[0]["type"], want[0]["data"])
        canonical = (await harness.get(key, f"/api/v1/events/{webhook_id}")).json()
        assert canonical["derived_from"] == raw_id and canonical["key"] == "gamma-GS-1001"
    assert partner.api_requests["get_booking"] == 3  # one GET per notification
    assert partner.token_requests["client_credentials"] == 1  # the connection's token, reused
    assert await entries(harness, key) == []


async def test_while_the_api_is_down_nothing_is_lost_or_stale_and_it_recovers_by_itself(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await gamma(harness, key, receiver, partner)
    notification, booking, _ = case("bookings_create")
    hold(partner, booking)
    await notify(harness, source, notification)
    await eventually(lambda: len(receiver.received) == 1)

    # Down: the update cannot be fetched. The copy fetched a moment ago must not stand in for
    # it (it predates the change), so the notification waits in the quarantine.
    await partner.go_down()
    update, updated, want = case("bookings_update")
    raw_id = await notify(harness, source, update)

    async def waiting() -> bool:
        return bool(await entries(harness, key, status="open", stage="fetch_failed"))

    await eventually(waiting)
    (entry,) = await entries(harness, key, status="open")
    assert entry["event_id"] == raw_id and "bookings/GS-1001" in entry["reason"]

    # Meanwhile, another source's events are routed: the router is not held by the partner.
    plain = await harness.post(key, "/api/v1/sources", {"name": "plain"})
    body, headers = signed(plain["secrets"][0], "plain-1", {"type": "ping.sent", "data": {}})
    r = await harness.client.post(f"/in/{plain['source']['id']}", content=body, headers=headers)
    assert r.status_code == 202
    await eventually(lambda: any(p["type"] == "ping.sent" for _, p in receiver.received))
    # Retried while down (the breaker opening and closing between): still there, still open.
    await eventually(lambda: _tried_again(harness, key, raw_id))
    assert len(receiver.received) == 2

    hold(partner, updated)
    await partner.come_back()
    await eventually(lambda: any(p["type"] == "booking.updated" for _, p in receiver.received))
    (delivered,) = [p for _, p in receiver.received if p["type"] == "booking.updated"]
    assert delivered["data"] == want[0]["data"]  # the state after the change, revision 3
    assert await entries(harness, key, status="open") == []
    history = await entries(harness, key, event_id=raw_id)
    assert history and all(e["resolution"] == "reprocessed" for e in history)
    assert len(receiver.received) == 3  # once: no second canonical event of it


async def _tried_again(h: Harness, key: str, raw_id: str) -> bool:
    return len(await entries(h, key, event_id=raw_id)) >= 2


async def test_without_a_connection_it_waits_and_goes_through_once_there_is_one(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await harness.post(key, "/api/v1/sources", {"name": "gamma", "kit": "pms_gamma"})
    ep = await harness.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    await harness.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    notification, booking, want = case("bookings_create")
    hold(partner, booking)
    await notify(harness, source, notification)

    async def waiting() -> bool:
        return bool(await entries(harness, key, status="open", stage="fetch_failed"))

    await eventually(waiting)
    (entry,) = await entries(harness, key, status="open")
    assert "no connection(s) to partner 'gamma_stays'" in entry["reason"]
    await connect(harness, key, partner)
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0][1]["data"] == want[0]["data"]


async def test_a_booking_the_partner_does_not_have_is_quarantined_with_its_answer(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await gamma(harness, key, receiver, partner)
    notification, _, _ = case("invalid_fetch_not_found")
    await notify(harness, source, notification)

    async def waiting() -> bool:
        return bool(await entries(harness, key, status="open", stage="fetch_failed"))

    await eventually(waiting)
    (entry,) = await entries(harness, key, status="open")
    assert "GET bookings/GS-404: the partner answered 404" in entry["reason"]
    assert entry["kit"] == "pms_gamma" and receiver.received == []


async def test_the_fetch_holds_no_transaction_ingest_commits_while_the_partner_answers(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await gamma(harness, key, receiver, partner)
    plain = await harness.post(key, "/api/v1/sources", {"name": "plain"})
    notification, booking, _ = case("bookings_create")
    hold(partner, booking)
    partner.api_mode, partner.slow_seconds = "slow", 1.5  # under the client's 2 s timeout
    await notify(harness, source, notification)
    await eventually(lambda: partner.api_requests["get_booking"] == 1)  # the GET is in flight
    # On SQLite one writer at a time: were the stage's transaction open around the fetch, this
    # ingest would commit only after it, with the canonical event already in the log.
    body, headers = signed(plain["secrets"][0], "plain-1", {"type": "ping.sent", "data": {}})
    r = await harness.client.post(f"/in/{plain['source']['id']}", content=body, headers=headers)
    assert r.status_code == 202
    assert await _normalized(harness) == 0
    await eventually(lambda: any(p["type"] == "booking.created" for _, p in receiver.received))
    assert await _normalized(harness) == 1


async def _normalized(h: Harness) -> int:
    with system_scope("test: counting canonical events"):
        async with h.system.db.read() as conn:
            query = sa.select(sa.func.count()).where(events.c.derived_from.is_not(None))
            return int((await conn.execute(query)).scalar_one())


async def test_retries_page_through_every_open_entry_and_stop_while_the_breaker_is_open(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await harness.post(key, "/api/v1/sources", {"name": "gamma", "kit": "pms_gamma"})
    ep = await harness.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    await harness.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    system = harness.system
    system.normalization.fetch_retry = RetryPolicy(schedule=(3600.0,), jitter=0.0)  # not here
    # A second stage on the same database, as another process's: its retries are the test's.
    slow_to_close = msgspec.structs.replace(
        POLICY,
        breaker=msgspec.structs.replace(POLICY.breaker, open_seconds=60.0, max_open_seconds=60.0),
    )
    other = Normalization(
        NormalizationStore(system.db),
        system.log_writer,
        system.kits,
        system.catalog,
        fetcher=Fetcher(
            system.partner_session,
            system.tokens,
            base_urls=system.settings.partner_api_urls,
            policy=slow_to_close,
        ),
        fetch_retry=RetryPolicy(schedule=(0.0,) * 10, jitter=0.0),
    )
    notification, booking, _ = case("bookings_create")
    for i in (1, 2):
        hold(partner, dict(booking, id=f"GS-{i}"))
        await notify(
            harness, source, dict(notification, notification_id=f"n{i}", booking_id=f"GS-{i}")
        )

    async def open_count(n: int) -> bool:
        return len(await entries(harness, key, status="open", stage="fetch_failed")) == n

    await eventually(lambda: open_count(2))  # no connection yet
    await connect(harness, key, partner)
    with system_scope("test: the other stage's retries"):
        assert await other.retry_fetches(page=1) == 2  # one page at a time, both reached
    await eventually(lambda: len(receiver.received) == 2)
    assert await open_count(0)

    await partner.go_down()
    hold(partner, dict(booking, id="GS-3"))
    await notify(harness, source, dict(notification, notification_id="n3", booking_id="GS-3"))
    await eventually(lambda: open_count(1))
    with system_scope("test: the other stage's retries"):
        tries = [await other.retry_fetches() for _ in range(4)]
        assert tries[0] == 1 and tries[-1] == 0  # connection errors opened its breaker
        before = len(await entries(harness, key, stage="fetch_failed"))
        assert await other.retry_fetches() == 0  # refused by the open breaker: not even tried
    assert len(await entries(harness, key, stage="fetch_failed")) == before
    assert await open_count(1)
