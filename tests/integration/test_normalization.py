"""Partner kits through ingest: a partner's payload reaches the receiver as its canonical event,
signed; what cannot be normalized is quarantined, listed, never delivered, and delivered once
reprocessed after the kit is fixed; held transitions are released by the event that makes them
legal; tenants never see each other's quarantine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from tests.integration.conftest import Harness, eventually, settings_for, signed
from tests.partner_plugin import EXAMPLE, install_example_kit

from interlink import partners
from interlink.app import Interlink
from interlink.ingress.verifiers import stripe_scheme
from interlink.ingress.verifiers.hmac_scheme import sign_hmac
from interlink.partners import mapping
from interlink.partners.kit import KitRegistry
from interlink.partners.stage import CURSOR, Normalization
from interlink.storage.normalization import NormalizationStore
from interlink.storage.tenancy import system_scope

CONTRACTS = Path(__file__).parents[1] / "contracts"


def fixture(kit: str, case: str) -> dict[str, Any]:
    return dict(json.loads((CONTRACTS / kit / case / "input.json").read_text()))


def expected(kit: str, case: str) -> list[dict[str, Any]]:
    return list(json.loads((CONTRACTS / kit / case / "expected.json").read_text())["events"])


async def wire(
    h: Harness, key: str, receiver: Any, kit: str, types: str = "*", **source: Any
) -> dict[str, Any]:
    created = await h.post(key, "/api/v1/sources", {"name": kit, "kit": kit, **source})
    ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": [types]}
    )
    return created


async def send(h: Harness, source: dict[str, Any], msg_id: str, payload: dict[str, Any]) -> str:
    body, headers = signed(source["secrets"][0], msg_id, payload)
    r = await h.client.post(f"/in/{source['source']['id']}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def quarantined(h: Harness, key: str, **params: Any) -> list[dict[str, Any]]:
    r = await h.get(key, "/api/v1/quarantine", **params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_partner_payload_is_delivered_as_its_canonical_event(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha")
    assert source["source"]["kit"] == "pms_alpha"
    raw_id = await send(harness, source, "alpha-1", fixture("pms_alpha", "reservation_created"))
    await eventually(lambda: len(receiver.received) == 1)
    webhook_id, payload = receiver.received[0]  # the receiver verified the signature
    want = expected("pms_alpha", "reservation_created")[0]
    assert payload["type"] == "booking.created"
    assert payload["data"] == want["data"]
    canonical = (await harness.get(key, f"/api/v1/events/{webhook_id}")).json()
    assert canonical["origin"] == "normalized" and canonical["derived_from"] == raw_id
    assert canonical["version"] == 1 and canonical["key"] == "AR-1001"
    assert canonical["occurred_at"] == want["occurred_at"]
    raw = (await harness.get(key, f"/api/v1/events/{raw_id}")).json()
    assert raw["origin"] == "partner"
    replay = await harness.client.post(f"/api/v1/events/{raw_id}/replay", headers=harness.auth(key))
    assert replay.status_code == 409 and "partner kit 'pms_alpha'" in replay.json()["detail"]
    replay = await harness.client.post(
        f"/api/v1/events/{webhook_id}/replay", headers=harness.auth(key)
    )
    assert replay.status_code == 202 and replay.json()["queued"] == 1
    await eventually(lambda: len(receiver.received) == 2)
    assert receiver.received[1][0] == webhook_id
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 2  # the partner's own event is never routed


async def test_availability_webhook_fans_out_per_night(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha", "availability.*")
    await send(harness, source, "alpha-cal", fixture("pms_alpha", "calendar_updated"))
    await eventually(lambda: len(receiver.received) == 2)
    got = sorted(p["data"]["date"] for _, p in receiver.received)
    assert got == ["2026-04-01", "2026-04-02"]


async def test_invalid_payload_is_quarantined_and_delivered_once_the_kit_is_fixed(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha")
    bad = fixture("pms_alpha", "invalid_unknown_status")
    raw_id = await send(harness, source, "alpha-bad", bad)

    async def one_entry() -> bool:
        return len(await quarantined(harness, key)) == 1

    await eventually(one_entry)
    (entry,) = await quarantined(harness, key, status="open")
    assert entry["stage"] == "mapping" and entry["event_id"] == raw_id
    assert "'ON_HOLD' at 'reservation.status'" in entry["reason"]
    assert entry["kit"] == "pms_alpha" and entry["kit_version"] == "1.0.0"
    r = await harness.get(key, "/api/v1/deliveries")
    assert r.json()["data"] == [] and receiver.received == []

    # The partner's new status gets a place in the mapping: a fixed kit, deployed.
    system = harness.system
    kit = system.kits.get("pms_alpha")
    assert kit is not None
    text = (Path(partners.__file__).parent / "kits/pms_alpha/mapping.toml").read_text()
    known = 'CONFIRMED = "confirmed"'
    fixed = text.replace(known, known + ', ON_HOLD = "tentative"')
    assert fixed != text
    system.kits.register(replace(kit, version="1.0.1", normalizer=mapping.load(fixed)))

    r = await harness.client.post(
        f"/api/v1/quarantine/{entry['id']}/reprocess", headers=harness.auth(key)
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["entry"]["resolution"] == "reprocessed" and len(done["appended"]) == 1
    assert done["quarantined"] == []
    await eventually(lambda: len(receiver.received) == 1)
    webhook_id, payload = receiver.received[0]
    assert webhook_id == done["appended"][0]
    assert payload["type"] == "booking.updated" and payload["data"]["status"] == "tentative"
    assert (await quarantined(harness, key, status="open")) == []
    again = await harness.client.post(
        f"/api/v1/quarantine/{entry['id']}/reprocess", headers=harness.auth(key)
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_another_tenants_quarantine_is_not_found(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant("acme")
    other = await harness.tenant("globex")
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_beta")
    payload = fixture("pms_beta", "invalid_state_code")
    body = json.dumps(payload).encode()
    config = source["source"]["verifier_config"]
    assert source["source"]["verifier"] == "hmac"  # the kit's scheme
    headers = {
        "x-beta-signature": sign_hmac(source["secrets"][0], body, config),
        "content-type": "application/json",
    }
    r = await harness.client.post(f"/in/{source['source']['id']}", content=body, headers=headers)
    assert r.status_code == 202, r.text

    async def listed() -> bool:
        return len(await quarantined(harness, key)) == 1

    await eventually(listed)
    (entry,) = await quarantined(harness, key)
    assert (await quarantined(harness, other)) == []
    metrics = (await harness.client.get("/metrics")).text
    gauge = f'interlink_quarantine_open{{source_id="{source["source"]["id"]}",stage="mapping"}} 1.0'
    assert gauge in metrics
    for method, path in [
        ("GET", f"/api/v1/quarantine/{entry['id']}"),
        ("POST", f"/api/v1/quarantine/{entry['id']}/reprocess"),
    ]:
        r = await harness.client.request(method, path, headers=harness.auth(other))
        assert r.status_code == 404, (path, r.text)
    r = await harness.client.patch(
        f"/api/v1/sources/{source['source']['id']}", json={"kit": None}, headers=harness.auth(other)
    )
    assert r.status_code == 404


async def test_held_transition_is_released_by_the_event_that_makes_it_legal(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha", "booking.*")
    # The cancellation overtakes the booking it cancels: held, not delivered.
    cancel_id = await send(harness, source, "a-3", fixture("pms_alpha", "reservation_cancelled"))

    async def held() -> bool:
        return len(await quarantined(harness, key, stage="held", status="open")) == 1

    await eventually(held)
    (entry,) = await quarantined(harness, key, stage="held")
    assert "cannot start as 'cancelled'" in entry["reason"]
    assert entry["event"]["type"] == "booking.cancelled" and entry["entity_key"] == "AR-1001"
    await asyncio.sleep(0.3)
    assert receiver.received == []

    await send(harness, source, "a-1", fixture("pms_alpha", "reservation_created"))
    await eventually(lambda: len(receiver.received) == 2)
    assert [p["type"] for _, p in receiver.received] == ["booking.created", "booking.cancelled"]
    (released,) = await quarantined(harness, key, stage="held")
    assert released["resolution"] == "released" and released["resolved_at"] is not None
    # The partner's event's timeline tells the story: held, released, made into which event.
    steps = (await harness.get(key, f"/api/v1/events/{cancel_id}/timeline")).json()["steps"]
    assert [s["step"] for s in steps[:1]] == ["received"]
    kinds = {s["step"]: s for s in steps}
    assert kinds["quarantined"]["stage"] == "held"
    assert kinds["quarantined"]["resolution"] == "released"
    assert kinds["normalized"]["type"] == "booking.cancelled"
    assert "routed" not in kinds  # the partner's own event goes nowhere
    made = kinds["normalized"]["event_id"]
    steps = (await harness.get(key, f"/api/v1/events/{made}/timeline")).json()["steps"]
    assert steps[0]["derived_from"] == cancel_id and steps[1]["step"] == "routed"

    # Older than what the booking went through already: out of order, never delivered.
    await send(harness, source, "a-2", fixture("pms_alpha", "reservation_modified"))

    async def stale() -> bool:
        return len(await quarantined(harness, key, stage="out_of_order")) == 1

    await eventually(stale)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 2


async def test_illegal_transition_under_the_quarantine_rule(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_beta", "booking.*")
    secret, config = source["secrets"][0], source["source"]["verifier_config"]

    async def post(case: str, **changes: Any) -> None:
        body = json.dumps(fixture("pms_beta", case) | changes).encode()
        headers = {"x-beta-signature": sign_hmac(secret, body, config)}
        r = await harness.client.post(
            f"/in/{source['source']['id']}", content=body, headers=headers
        )
        assert r.status_code == 202, r.text

    await post("booking_new")
    await post("booking_cancel")
    await eventually(lambda: len(receiver.received) == 2)
    # Sent after the cancellation: a cancelled booking cannot be confirmed again.
    later = fixture("pms_beta", "booking_cancel")["ts"] + 1
    await post("booking_change", id="b-evt-late", ts=later)

    async def rejected() -> bool:
        return len(await quarantined(harness, key, stage="transition")) == 1

    await eventually(rejected)
    (entry,) = await quarantined(harness, key)
    assert "illegal transition 'cancelled' → 'confirmed'" in entry["reason"]
    await asyncio.sleep(0.3)
    assert [p["type"] for _, p in receiver.received] == ["booking.created", "booking.cancelled"]


async def test_payment_refund_before_its_success_is_held(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    issued = "whsec_stripe_issued_this_one"  # Stripe makes the endpoint secret, not Interlink
    source = await wire(harness, key, receiver, "payments_stripe", "payment.*", secrets=[issued])
    assert source["source"]["verifier"] == "stripe"  # the kit's scheme
    for case in ("charge_refunded", "customer_created_is_ignored", "payment_intent_succeeded"):
        body = json.dumps(fixture("payments_stripe", case)).encode()
        headers = {"stripe-signature": stripe_scheme.sign(issued, int(time.time()), body)}
        r = await harness.client.post(
            f"/in/{source['source']['id']}", content=body, headers=headers
        )
        assert r.status_code == 202, r.text
    await eventually(lambda: len(receiver.received) == 2)
    assert [p["type"] for _, p in receiver.received] == ["payment.succeeded", "payment.refunded"]


async def test_a_second_pass_over_the_log_neither_loses_nor_doubles(
    harness: Harness, receiver_factory: Any
) -> None:
    """As after a crash between the stage's commit and the router's (the batch comes again),
    and as with a second router whose stage read the cursor before the first moved it."""
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha", "booking.*")
    await send(harness, source, "a-1", fixture("pms_alpha", "reservation_created"))
    await send(harness, source, "a-3", fixture("pms_alpha", "reservation_cancelled"))
    await send(harness, source, "a-x", fixture("pms_alpha", "invalid_unknown_status"))
    await eventually(lambda: len(receiver.received) == 2)

    async def one_quarantined() -> bool:
        return len(await quarantined(harness, key)) == 1

    await eventually(one_quarantined)
    system = harness.system

    # What the router's stage does, by hand: the pipeline's work, in the system scope.
    def pipeline() -> contextlib.AbstractContextManager[object]:
        return system_scope("test: the router's normalization stage")

    with pipeline():
        batch = await system.log_writer.read_after(0, 1000)

    def stage() -> Normalization:
        return Normalization(
            NormalizationStore(system.db),
            system.log_writer,
            KitRegistry.installed(),
            system.catalog,
        )

    with pipeline():
        routed = await stage()(batch)  # after a restart: the position is read from the cursor
    assert all(e.type.startswith("booking.") for e in routed) and len(routed) == 2
    late = stage()
    late._position = 0  # read before the first router's stage moved the cursor
    with pipeline():
        assert len(await late(batch)) == 2
    events = (await harness.get(key, "/api/v1/events", limit=500)).json()["data"]
    assert sorted(e["origin"] for e in events) == ["normalized"] * 2 + ["partner"] * 3
    assert len(await quarantined(harness, key)) == 1
    # Even with the stage's cursor lost, the canonical events are not appended twice.
    with pipeline():
        async with NormalizationStore(system.db).transaction() as tx:
            await tx.move_cursor(CURSOR, 0)
        await stage()(batch)
    events = (await harness.get(key, "/api/v1/events", limit=500)).json()["data"]
    assert len(events) == 5 and len(receiver.received) == 2


async def test_catalog_and_kits_are_listed(harness: Harness) -> None:
    key = await harness.tenant()
    listing = (await harness.get(key, "/api/v1/event-types")).json()["data"]
    names = {(t["type"], t["version"]) for t in listing}
    assert ("booking.created", 1) in names and ("payment.refunded", 1) in names
    one = (await harness.get(key, "/api/v1/event-types/booking.created")).json()
    assert one["latest"] == 1 and one["versions"][0]["schema"]["title"] == "booking.created"
    r = await harness.get(key, "/api/v1/event-types/booking.exploded")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    kits = (await harness.get(key, "/api/v1/partner-kits")).json()["data"]
    alpha = next(k for k in kits if k["name"] == "pms_alpha")
    assert alpha["entities"]["booking"]["rule"] == "hold"
    assert "availability.updated" in alpha["event_types"]


async def test_source_kit_is_checked_and_can_be_changed(harness: Harness) -> None:
    key = await harness.tenant()
    r = await harness.client.post(
        "/api/v1/sources", json={"name": "x", "kit": "no_such_kit"}, headers=harness.auth(key)
    )
    assert r.status_code == 422 and "no partner kit 'no_such_kit'" in r.json()["detail"]
    source = await harness.post(key, "/api/v1/sources", {"name": "plain"})
    assert source["source"]["kit"] is None
    path = f"/api/v1/sources/{source['source']['id']}"
    r = await harness.client.patch(path, json={"kit": "pms_alpha"}, headers=harness.auth(key))
    assert r.status_code == 200 and r.json()["kit"] == "pms_alpha"
    r = await harness.client.patch(path, json={"kit": "nope"}, headers=harness.auth(key))
    assert r.status_code == 422
    r = await harness.client.patch(path, json={"kit": None}, headers=harness.auth(key))
    assert r.status_code == 200 and r.json()["kit"] is None
    r = await harness.get(key, "/api/v1/quarantine", stage="bogus")
    assert r.status_code == 400


def test_held_entries_round_trip() -> None:
    from interlink.partners.gate import Candidate, held_candidate, quarantine_entry
    from interlink.partners.pipeline import Normalized, Stage

    c = Candidate("t", "s", "evt_1", 2, Normalized("booking.created", 1, "k", 1.5, {"a": 1}), 2.0)
    entry = quarantine_entry(c, Stage.HELD, "why", None, "kit", entity="booking")
    assert held_candidate(msgspec.convert(msgspec.to_builtins(entry), type(entry))) == c


async def test_a_kit_from_its_own_package_works_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver_factory: Any
) -> None:
    """Onboarding the documented example partner: a package with a mapping file, no core change."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(install_example_kit(tmp_path / "site")))
    system = Interlink(settings_for(tmp_path))
    await system.start()
    try:
        transport = httpx.ASGITransport(app=system)
        async with httpx.AsyncClient(transport=transport, base_url="http://interlink") as client:
            h = Harness(system, client)
            key = await h.tenant()
            receiver = await receiver_factory()
            source = await wire(h, key, receiver, "harbor_pms", "booking.*")
            assert source["source"]["verifier"] == "hmac"
            body = (EXAMPLE / "sample.json").read_bytes()
            signature = sign_hmac(source["secrets"][0], body, source["source"]["verifier_config"])
            r = await client.post(
                f"/in/{source['source']['id']}",
                content=body,
                headers={"x-harbor-signature": signature},
            )
            assert r.status_code == 202, r.text
            await eventually(lambda: len(receiver.received) == 1)
            (want,) = json.loads((EXAMPLE / "expected.json").read_text())["events"]
            assert receiver.received[0][1]["type"] == want["type"]
            assert receiver.received[0][1]["data"] == want["data"]
    finally:
        await system.stop()


async def test_a_bulk_replay_job_sends_canonical_events_never_the_partners(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await wire(harness, key, receiver, "pms_alpha", "booking.*")
    raw_id = await send(harness, source, "a-1", fixture("pms_alpha", "reservation_created"))
    await eventually(lambda: len(receiver.received) == 1)
    canonical_id = receiver.received[0][0]
    endpoint_id = (await harness.get(key, "/api/v1/endpoints")).json()["data"][0]["id"]
    r = await harness.client.post(
        "/api/v1/jobs/replay",
        json={"endpoint_id": endpoint_id, "source_id": source["source"]["id"]},
        headers=harness.auth(key),
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    async def over() -> bool:
        job = (await harness.get(key, f"/api/v1/jobs/{job_id}")).json()
        return bool(job["status"] == "succeeded")

    await eventually(over, timeout=20)
    await eventually(lambda: len(receiver.received) == 2)
    await asyncio.sleep(0.3)
    assert [m for m, _ in receiver.received] == [canonical_id, canonical_id]
    assert raw_id not in {m for m, _ in receiver.received}
