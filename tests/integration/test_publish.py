"""The publish API in process (SQLite by default; INTERLINK_TEST_BACKEND=postgres for
PostgreSQL): published events are stored before the answer, deduped by idempotency key per
tenant, routed like any event, validated against the catalog, and refusals store nothing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.integration.conftest import ADMIN, Harness, Receiver, eventually

CANCELLED = {"booking_id": "b-1", "partner": "hotel", "status": "cancelled"}


async def subscribe(h: Harness, key: str, receiver: Receiver, types: list[str]) -> str:
    ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": types}
    )
    return str(ep["endpoint"]["id"])


async def publish(h: Harness, key: str, body: Any, path: str = "/api/v1/events") -> Any:
    r = await h.client.post(path, json=body, headers=h.auth(key))
    assert r.status_code == 202, r.text
    return r.json()


async def events_of(h: Harness, key: str) -> list[dict[str, Any]]:
    r = await h.get(key, "/api/v1/events", limit=500)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_a_published_event_is_stored_routed_and_deduped(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    await subscribe(harness, key, receiver, ["booking.*"])
    body = {
        "type": "booking.confirmed",
        "data": {"booking": "b-1"},
        "key": "b-1",
        "idempotency_key": "confirm-b-1",
        "occurred_at": "2026-01-01T10:00:00Z",
    }
    first = await publish(harness, key, body)
    assert first["duplicate"] is False and first["id"].startswith("evt_")
    again = await publish(harness, key, body | {"data": {"booking": "changed"}})
    assert again == {"id": first["id"], "duplicate": True}

    await eventually(lambda: len(receiver.received) == 1)
    webhook_id, payload = receiver.received[0]
    assert webhook_id == first["id"]
    assert payload["type"] == "booking.confirmed" and payload["data"] == {"booking": "b-1"}

    (listed,) = await events_of(harness, key)
    assert listed["origin"] == "api" and listed["id"] == first["id"]
    assert listed["key"] == "b-1" and listed["idempotency_key"] == "confirm-b-1"
    assert listed["occurred_at"] == "2026-01-01T10:00:00Z"
    timeline = (await harness.get(key, f"/api/v1/events/{first['id']}/timeline")).json()
    steps = [s["step"] for s in timeline["steps"]]
    assert steps[0] == "received" and timeline["steps"][0]["origin"] == "api"
    assert "routed" in steps and "attempt" in steps


async def test_a_batch_answers_in_order_and_delivers_each_key_once(
    harness: Harness, receiver_factory: Any
) -> None:
    key = await harness.tenant()
    receiver = await receiver_factory()
    await subscribe(harness, key, receiver, ["order.*"])
    first = await publish(
        harness,
        key,
        {
            "events": [
                {"type": "order.placed", "data": {"n": n}, "idempotency_key": f"o{n}"}
                for n in range(5)
            ]
        },
        "/api/v1/events/batch",
    )
    assert [a["duplicate"] for a in first["data"]] == [False] * 5
    # Repeats across batches and within one, and events without a key (never duplicates).
    batch = [
        {"type": "order.placed", "data": {"n": n}, "idempotency_key": f"o{n}"}
        for n in (3, 4, 5, 5, 6)
    ]
    batch += [{"type": "order.placed", "data": {"free": True}}] * 2
    second = await publish(harness, key, {"events": batch}, "/api/v1/events/batch")
    answers = second["data"]
    assert [a["duplicate"] for a in answers] == [True, True, False, True, False, False, False]
    assert answers[0]["id"] == first["data"][3]["id"]
    assert answers[3]["id"] == answers[2]["id"]
    assert answers[5]["id"] != answers[6]["id"]

    unique = {a["id"] for a in first["data"] + answers}
    assert len(unique) == 9
    await eventually(lambda: len(receiver.received) == 9)
    counts = Counter(webhook_id for webhook_id, _ in receiver.received)
    assert set(counts) == unique and set(counts.values()) == {1}
    assert len(await events_of(harness, key)) == 9


async def test_catalog_types_are_validated_and_a_bad_batch_stores_nothing(
    harness: Harness,
) -> None:
    key = await harness.tenant()
    ok = await publish(harness, key, {"type": "booking.cancelled", "data": CANCELLED})
    stored = (await harness.get(key, f"/api/v1/events/{ok['id']}")).json()
    assert stored["version"] == 1  # the catalog version it was validated against

    bad = CANCELLED | {"guest": {"name": "A", "shoe_size": 44}}
    r = await harness.client.post(
        "/api/v1/events",
        json={"type": "booking.cancelled", "data": bad},
        headers=harness.auth(key),
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "/data/guest" in r.json()["detail"] and "shoe_size" in r.json()["detail"]

    batch = [
        {"type": "booking.cancelled", "data": CANCELLED | {"booking_id": f"b{n}"}} for n in range(4)
    ]
    batch[2] = {"type": "booking.cancelled", "data": {"booking_id": "b2", "partner": "p"}}
    r = await harness.client.post(
        "/api/v1/events/batch", json={"events": batch}, headers=harness.auth(key)
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["detail"].startswith("events[2]/data: ") and "status" in problem["detail"]
    assert "nothing of the batch was stored" in problem["detail"]
    assert problem["errors"][0]["index"] == 2 and problem["errors"][0]["path"] == "/data"
    assert len(await events_of(harness, key)) == 1


async def test_bad_input_is_refused_clearly_and_stores_nothing(harness: Harness) -> None:
    key = await harness.tenant()
    good = {"type": "order.placed", "data": {}}
    single, batch = "/api/v1/events", "/api/v1/events/batch"
    cases: list[tuple[str, str, bytes, int, str]] = [
        ("malformed", single, b'{"type": "x",', 400, "JSON"),
        ("no type", single, json.dumps({"data": {}}).encode(), 400, "type"),
        (
            "data not an object",
            single,
            json.dumps({"type": "a", "data": [1]}).encode(),
            400,
            "data",
        ),
        ("type not a string", single, json.dumps({"type": 7, "data": {}}).encode(), 400, "type"),
        ("wildcard type", single, json.dumps({"type": "a.*", "data": {}}).encode(), 400, "type"),
        ("unknown field", single, json.dumps(good | {"tenant_id": "x"}).encode(), 400, "tenant_id"),
        (
            "bad time",
            single,
            json.dumps(good | {"occurred_at": "soon"}).encode(),
            400,
            "occurred_at",
        ),
        ("empty batch", batch, json.dumps({"events": []}).encode(), 400, "events"),
        ("batch as a list", batch, json.dumps([good]).encode(), 400, "object"),
        (
            "over 1,000",
            batch,
            json.dumps({"events": [good] * 1001}).encode(),
            413,
            "at most 1,000 events",
        ),
        (
            "body too large",
            single,
            json.dumps({"type": "a", "data": {"pad": "x" * 1_100_000}}).encode(),
            413,
            "larger than this operation's limit of 1,048,576 bytes",
        ),
    ]
    for name, path, body, status, words in cases:
        r = await harness.client.post(
            path,
            content=body,
            headers=harness.auth(key) | {"content-type": "application/json"},
        )
        assert r.status_code == status, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json", name
        assert words in r.json()["detail"], (name, r.json())
    for path, body_json in ((single, good), (batch, {"events": [good]})):
        r = await harness.client.post(path, json=body_json, headers=harness.auth(ADMIN))
        assert r.status_code == 403, r.text
        r = await harness.client.post(path, json=body_json)
        assert r.status_code == 401, r.text
    assert await events_of(harness, key) == []


async def test_tenants_never_meet_through_their_keys(harness: Harness) -> None:
    a, b = await harness.tenant("a"), await harness.tenant("b")
    body = {"type": "order.placed", "data": {"n": 1}, "idempotency_key": "same"}
    of_a = await publish(harness, a, body)
    of_b = await publish(harness, b, body)
    assert not of_b["duplicate"] and of_b["id"] != of_a["id"]
    r = await harness.get(b, f"/api/v1/events/{of_a['id']}")
    assert r.status_code == 404
    assert [e["id"] for e in await events_of(harness, b)] == [of_b["id"]]
