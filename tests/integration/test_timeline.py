"""GET /api/v1/events/{id}/timeline: one event's steps in time order, for its tenant only; and
the CLI's rendering of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.integration.conftest import Harness, eventually, signed
from tests.integration.test_delivery import send, wire

from interlink.cli import format_timeline


def at(step: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(step["at"])


async def test_timeline_of_a_retried_then_delivered_event(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    flaky = await receiver_factory(answers=[503])
    healthy = await receiver_factory()
    source, secret, ep1 = await wire(harness, key, flaky.url, retry_schedule=[0, 0.05, 0.05])
    flaky.secret, flaky_id = ep1.split("|")
    ep2 = await harness.post(key, "/api/v1/endpoints", {"url": healthy.url})
    healthy.secret, healthy_id = ep2["secret"], ep2["endpoint"]["id"]
    await harness.post(
        key, "/api/v1/subscriptions", {"endpoint_id": healthy_id, "event_types": ["booking.*"]}
    )
    event_id = await send(harness, source, secret, "m1")
    await eventually(lambda: len(flaky.received) == 2 and len(healthy.received) == 1)

    async def settled() -> bool:
        r = await harness.get(key, "/api/v1/deliveries", event_id=event_id, status="succeeded")
        return len(r.json()["data"]) == 2

    await eventually(settled)
    r = await harness.get(key, f"/api/v1/events/{event_id}/timeline")
    assert r.status_code == 200, r.text
    body = r.json()
    steps = body["steps"]
    assert body["event_id"] == event_id
    assert [at(s) for s in steps] == sorted(at(s) for s in steps)

    received = steps[0]
    assert received["step"] == "received"
    assert received["source_id"] == source and received["source_name"] == "pms"
    assert received["verifier"] == "standard_webhooks"
    assert received["signature_headers"] == "webhook-*"
    assert received["type"] == "booking.created" and received["idempotency_key"] == "m1"

    routed = [s for s in steps if s["step"] == "routed"]
    assert {(s["endpoint_id"], s["endpoint_url"]) for s in routed} == {
        (flaky_id, flaky.url),
        (healthy_id, healthy.url),
    }
    attempts = [s for s in steps if s["step"] == "attempt"]
    flaky_attempts = [s for s in attempts if s["endpoint_id"] == flaky_id]
    assert [(s["number"], s["status_code"], s["outcome"]) for s in flaky_attempts] == [
        (1, 503, "failed"),
        (2, 200, "succeeded"),
    ]
    assert all(s["latency_ms"] >= 0 and s["error"] is None for s in attempts)
    assert [(s["endpoint_id"], s["status_code"]) for s in attempts if s not in flaky_attempts] == [
        (healthy_id, 200)
    ]
    states = {s["endpoint_id"]: s for s in steps if s["step"] == "delivery_state"}
    assert states[flaky_id]["status"] == "succeeded" and states[flaky_id]["attempt_count"] == 2
    assert states[healthy_id]["status"] == "succeeded"
    assert states[flaky_id]["next_attempt_at"] is None
    # Each delivery: routed, then its attempts, then its state.
    for endpoint_id in (flaky_id, healthy_id):
        kinds = [s["step"] for s in steps if s.get("endpoint_id") == endpoint_id]
        assert kinds[0] == "routed" and kinds[-1] == "delivery_state"

    text = "\n".join(format_timeline(body))
    assert f"event {event_id}" in text
    assert "verified by standard_webhooks via webhook-*" in text
    assert f"#1 {flaky_id}  503 failed" in text
    assert "succeeded after 2 attempt(s)" in text


async def test_timeline_of_an_event_nobody_subscribed_to(harness: Harness) -> None:
    key = await harness.tenant()
    source = await harness.post(key, "/api/v1/sources", {"name": "pms"})
    event_id = await send(harness, source["source"]["id"], source["secrets"][0], "m1")
    r = await harness.get(key, f"/api/v1/events/{event_id}/timeline")
    assert r.status_code == 200
    assert [s["step"] for s in r.json()["steps"]] == ["received"]


async def test_timeline_is_tenant_scoped(harness: Harness) -> None:
    acme = await harness.tenant("acme")
    other = await harness.tenant("other")
    source = await harness.post(acme, "/api/v1/sources", {"name": "pms"})
    body, headers = signed(source["secrets"][0], "m1", {"type": "a.b", "data": {}})
    r = await harness.client.post(f"/in/{source['source']['id']}", content=body, headers=headers)
    event_id = r.json()["id"]
    assert (await harness.get(acme, f"/api/v1/events/{event_id}/timeline")).status_code == 200
    r = await harness.get(other, f"/api/v1/events/{event_id}/timeline")
    assert r.status_code == 404 and "no event" in r.json()["detail"]
    assert (await harness.get(acme, "/api/v1/events/evt_nope/timeline")).status_code == 404
    r = await harness.client.get(f"/api/v1/events/{event_id}/timeline")
    assert r.status_code == 401


async def test_timeline_is_in_the_openapi_document(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    assert "/api/v1/events/{event_id}/timeline" in spec["paths"]
