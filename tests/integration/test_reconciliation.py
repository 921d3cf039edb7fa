"""Reconciliation against the simulated partner over loopback (issue 5, acceptance 3).

The partner's bookings live their lifecycles; their webhooks reach Interlink over real HTTP,
5 % dropped, 10 % sent twice and shuffled in windows. Interlink ingests, normalizes (pms_alpha)
and delivers to a real receiver on an ordered endpoint. Before reconciliation some bookings are
missing or stale downstream (the negative control); after one reconciliation cycle every one is
there in the partner's final state, and no booking's delivered sequence has an illegal step.
A second cycle emits nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from tests.integration.conftest import Harness, Receiver, eventually

from interlink.domain.entity_state import Machine
from interlink.partners.booking_story import STATE_OF, Faults, interleave, stories
from interlink.partners.kit import KitRegistry
from interlink.partners.simulator import PartnerSimulator
from interlink.partners.webhook_sender import WebhookSigner
from interlink.storage.tables import deliveries, quarantine
from interlink.storage.tenancy import system_scope

BOOKINGS = 300
SEED = 20260501
MACHINE: Machine = KitRegistry.installed().get("pms_alpha").entities["booking"].machine  # type: ignore[union-attr]


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@contextlib.asynccontextmanager
async def served(h: Harness) -> AsyncIterator[str]:
    """The harness's Interlink on a loopback port too, so the partner sends over real HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(
        h.system, host="127.0.0.1", port=port, lifespan="off", log_level="warning", loop="none"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wire(h: Harness, key: str, receiver: Receiver, partner: PartnerSimulator) -> Any:
    source = await h.post(key, "/api/v1/sources", {"name": "alpha", "kit": "pms_alpha"})
    endpoint = await h.post(key, "/api/v1/endpoints", {"url": receiver.url, "ordering": "ordered"})
    receiver.secret = endpoint["secret"]
    await h.post(
        key,
        "/api/v1/subscriptions",
        {"endpoint_id": endpoint["endpoint"]["id"], "event_types": ["booking.*"]},
    )
    connection = await h.post(
        key,
        "/api/v1/connections",
        {
            "partner": "alpha",
            "token_url": partner.token_url,
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )
    source_id = source["source"]["id"]
    r = await h.client.put(
        f"/api/v1/sources/{source_id}/reconciler",
        json={"connection_id": connection["id"], "api_url": partner.url, "interval_seconds": 3600},
        headers=h.auth(key),
    )
    assert r.status_code == 200, r.text
    return source


async def settled(h: Harness, receiver: Receiver) -> None:
    """Until every routed delivery succeeded and nothing new arrived for a while."""

    async def quiet() -> bool:
        before = len(receiver.received)
        await asyncio.sleep(1.0)
        with system_scope("test: deliveries settled"):
            async with h.system.db.read() as conn:
                open_ = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status != "succeeded")
                )
        return before == len(receiver.received) and open_ == 0

    await eventually(quiet, 120)


def by_booking(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = {}
    for _, payload in receiver.received:
        seen.setdefault(payload["data"]["booking_id"], []).append(payload["data"])
    return seen


def illegal_steps(history: list[dict[str, Any]]) -> int:
    # In arrival order: the endpoint is ordered, so that is the order a receiver acts on.
    bad, state = 0, None
    for data in history:
        target = data["status"]
        ok = (
            target in MACHINE.initial
            if state is None
            else (target == state or target in MACHINE.transitions[state])
        )
        bad += not ok
        state = target
    return bad


def off_target(partner: PartnerSimulator, delivered: dict[str, list[dict[str, Any]]]) -> int:
    """Bookings whose last delivered state (and revision) is not the partner's current one."""
    wrong = 0
    for booking_id, booking in partner.bookings.items():
        last = delivered.get(booking_id, [None])[-1]
        want = (STATE_OF[booking["status"]], booking["revision"])
        wrong += last is None or (last["status"], last["revision"]) != want
    return wrong


async def reconcile(h: Harness, key: str, source_id: str) -> dict[str, Any]:
    r = await h.client.post(f"/api/v1/sources/{source_id}/reconciliations", headers=h.auth(key))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_one_reconciliation_cycle_brings_every_booking_to_its_final_state(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source = await wire(h, key, receiver, partner)
    source_id = source["source"]["id"]
    rng = random.Random(SEED)
    changes = interleave(rng, stories(rng, BOOKINGS))
    faults = Faults(drop=0.05, duplicate=0.10, reorder=8)
    async with served(h) as base:
        plan = await partner.send_changes(
            f"{base}/in/{source_id}",
            WebhookSigner(source["secrets"][0]),
            changes,
            faults,
            seed=SEED,
        )
    assert all(s.status in (200, 202) for s in partner.sent), {s.status for s in partner.sent}
    duplicates = sum(s.duplicate for s in plan.sends)
    # Every fault was exercised: some webhooks dropped, some sent twice, some out of order.
    assert plan.dropped and duplicates > 0 and plan.reordered > 0
    await settled(h, receiver)

    before = by_booking(receiver)
    missing_before = BOOKINGS - len(before)
    stale_before = off_target(partner, before) - missing_before
    with system_scope("test: held"):
        async with h.system.db.read() as conn:
            held_before = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(quarantine)
                .where(quarantine.c.stage == "held", quarantine.c.resolved_at.is_(None))
            )
    # The negative control: without reconciliation, the drops leave bookings missing or stale.
    assert missing_before + stale_before > 0
    assert sum(illegal_steps(v) for v in before.values()) == 0

    run = await reconcile(h, key, source_id)
    await settled(h, receiver)
    after = by_booking(receiver)
    print(
        f"\n{BOOKINGS} bookings, {len(changes)} changes: {len(plan.dropped)} webhooks dropped, "
        f"{duplicates} duplicated, {plan.reordered} reordered; before reconciliation "
        f"{missing_before} missing, {stale_before} stale, {held_before} held; the run pulled "
        f"{run['pulled']}: {run['missing']} missing, {run['corrected']} corrected, "
        f"{run['unchanged']} unchanged, {run['emitted']} events emitted, "
        f"{run['superseded']} held superseded; after: {BOOKINGS - len(after)} missing, "
        f"{off_target(partner, after)} off target"
    )
    assert run["status"] == "succeeded" and run["pulled"] == BOOKINGS
    assert run["missing"] == missing_before
    assert run["missing"] + run["corrected"] == missing_before + stale_before
    assert run["conflicts"] == 0 and run["errors"] == 0
    assert len(after) == BOOKINGS  # 100 % present downstream
    assert off_target(partner, after) == 0  # each in the partner's final state
    assert sum(illegal_steps(v) for v in after.values()) == 0  # no illegal transition delivered

    # Idempotent: a second cycle finds nothing to do, and nothing more is delivered.
    delivered = len(receiver.received)
    again = await reconcile(h, key, source_id)
    assert (again["missing"], again["corrected"], again["emitted"]) == (0, 0, 0)
    assert again["unchanged"] == BOOKINGS
    await asyncio.sleep(1.0)
    assert len(receiver.received) == delivered

    r = await h.get(key, f"/api/v1/sources/{source_id}/reconciliations")
    assert r.status_code == 200
    assert [x["id"] for x in r.json()["data"]] == [again["id"], run["id"]]
    # Reconciliation's events are marked as such.
    webhook_id = receiver.received[-1][0]
    event = (await h.get(key, f"/api/v1/events/{webhook_id}")).json()
    assert event["origin"] == "reconciliation" and event["derived_from"] == run["id"]
    assert (await h.get(key, f"/api/v1/events/{webhook_id}/timeline")).status_code == 200
    metrics = await h.client.get("/metrics", headers=h.auth(h.system.settings.metrics_token))
    assert (
        f'interlink_reconciliation_runs_total{{source_id="{source_id}",status="succeeded"}} 2.0'
        in (metrics.text)
    )


async def test_held_events_made_obsolete_are_superseded_not_released(
    harness: Harness, receiver_factory: Any, partner: PartnerSimulator
) -> None:
    """A cancellation whose creation was lost is held; reconciliation introduces the booking
    and cancels it, and the held cancellation is superseded — delivered once, not twice."""
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source = await wire(h, key, receiver, partner)
    source_id = source["source"]["id"]
    rng = random.Random(1)
    story = next(s for s in iter(lambda: stories(rng, 1)[0], None) if s[-1].state == "cancelled")
    created, cancelled = story[0], story[-1]
    async with served(h) as base:
        for change in story:
            partner.apply(change)
        await partner.send_changes(
            f"{base}/in/{source_id}", WebhookSigner(source["secrets"][0]), [cancelled]
        )

    async def held() -> bool:
        r = await h.get(key, "/api/v1/quarantine", stage="held", status="open")
        return len(r.json()["data"]) == 1

    await eventually(held)
    assert created.booking_id not in by_booking(receiver)
    run = await reconcile(h, key, source_id)
    assert (run["missing"], run["superseded"]) == (1, 1), run
    await settled(h, receiver)
    delivered = by_booking(receiver)[created.booking_id]
    assert [d["status"] for d in delivered] == ["confirmed", "cancelled"]
    q = await h.get(key, "/api/v1/quarantine", stage="held")
    assert [e["resolution"] for e in q.json()["data"]] == ["superseded"]
