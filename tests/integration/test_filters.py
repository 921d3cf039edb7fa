"""Content filters, segments, transformations and previews, through the API and the pipeline
in process (SQLite; PostgreSQL under INTERLINK_TEST_BACKEND=postgres): issue 16."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from tests.integration.conftest import Harness, eventually, signed

from interlink.storage.tables import events
from interlink.storage.tenancy import system_scope


async def wire(h: Harness, key: str, url: str) -> tuple[str, str, str, str]:
    """A source and an endpoint; returns source id, source secret, endpoint id, its secret."""
    source = await h.post(key, "/api/v1/sources", {"name": "pms"})
    ep = await h.post(key, "/api/v1/endpoints", {"url": url})
    return source["source"]["id"], source["secrets"][0], ep["endpoint"]["id"], ep["secret"]


async def send(h: Harness, source: str, secret: str, msg: str, data: Any, kind: str) -> None:
    body, headers = signed(secret, msg, {"type": kind, "data": data})
    r = await h.client.post(f"/in/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text


def tiers(receiver: Any) -> list[str]:
    return [payload["data"]["tier"] for _, payload in receiver.received]


async def problem(h: Harness, key: str, method: str, path: str, body: Any) -> dict[str, Any]:
    r = await h.client.request(method, path, json=body, headers=h.auth(key))
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return {"status": r.status_code, **r.json()}


async def test_filter_routes_by_content_and_errors_do_not_stop_routing(
    harness: Harness, receiver_factory: Any
) -> None:
    h = harness
    key = await h.tenant()
    finance = await receiver_factory()
    everyone = await receiver_factory()
    source, secret, fin_id, finance.secret = await wire(h, key, finance.url)
    ep = await h.post(key, "/api/v1/endpoints", {"url": everyone.url})
    everyone.secret = ep["secret"]
    await h.post(
        key,
        "/api/v1/subscriptions",
        {
            "endpoint_id": fin_id,
            "event_types": ["payment.*"],
            "filter": 'data.amount > 1000 && data.currency == "EUR"',
        },
    )
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    await send(h, source, secret, "m1", {"amount": 5000, "currency": "EUR"}, "payment.succeeded")
    await send(h, source, secret, "m2", {"amount": 5000, "currency": "USD"}, "payment.succeeded")
    await send(h, source, secret, "m3", {"currency": "EUR"}, "payment.succeeded")  # no amount
    await send(h, source, secret, "m4", {"amount": 20, "currency": "EUR"}, "payment.succeeded")
    await eventually(lambda: len(everyone.received) == 4)
    await eventually(lambda: len(finance.received) == 1)
    assert finance.received[0][1]["data"] == {"amount": 5000, "currency": "EUR"}
    metrics = (await h.client.get("/metrics")).text
    assert 'interlink_filter_evaluations_total{outcome="error"} 1.0' in metrics
    assert 'interlink_filter_evaluations_total{outcome="match"} 1.0' in metrics
    assert 'interlink_filter_evaluations_total{outcome="no_match"} 2.0' in metrics


async def test_segments_retarget_every_subscription_using_them(
    harness: Harness, receiver_factory: Any
) -> None:
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source, secret, ep_id, receiver.secret = await wire(h, key, receiver.url)
    seg = await h.post(
        key, "/api/v1/segments", {"name": "premium-hosts", "expression": 'data.tier == "gold"'}
    )
    assert seg["name"] == "premium-hosts"
    sub = await h.post(
        key,
        "/api/v1/subscriptions",
        {"endpoint_id": ep_id, "event_types": ["*"], "filter": 'segment("premium-hosts")'},
    )
    await send(h, source, secret, "g1", {"tier": "gold"}, "booking.created")
    await send(h, source, secret, "s1", {"tier": "silver"}, "booking.created")
    await eventually(lambda: tiers(receiver) == ["gold"])
    r = await h.client.patch(
        "/api/v1/segments/premium-hosts",
        json={"expression": 'data.tier in ["gold", "silver"]'},
        headers=h.auth(key),
    )
    assert r.status_code == 200, r.text
    await send(h, source, secret, "s2", {"tier": "silver"}, "booking.created")
    await eventually(lambda: tiers(receiver) == ["gold", "silver"])
    # In use: refused with the subscriptions named; unused: gone.
    refused = await problem(h, key, "DELETE", "/api/v1/segments/premium-hosts", None)
    assert refused["status"] == 409 and sub["id"] in refused["detail"]
    r = await h.client.patch(
        f"/api/v1/subscriptions/{sub['id']}", json={"filter": None}, headers=h.auth(key)
    )
    assert r.status_code == 200 and r.json()["filter"] is None
    r = await h.client.delete("/api/v1/segments/premium-hosts", headers=h.auth(key))
    assert r.status_code == 204, r.text


async def test_bad_input_is_a_422_naming_the_field(harness: Harness) -> None:
    h = harness
    key = await h.tenant()
    ep = await h.post(key, "/api/v1/endpoints", {"url": "http://example.com/hook"})
    base = {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    cases = {
        "data.amount >": ("filter: syntax error", "line 1, column 14"),
        'segment("nope")': ("filter: unknown segment 'nope'", "column 1"),
        "x" * 2049: ("filter: is 2049 characters long; the limit is 2048", ""),
        "(" * 40 + "1" + ")" * 40: ("filter: nests deeper than 32 brackets", "column 33"),
        "data.l.all(x, data.m.exists(y, y == x))": ("comprehension inside another", "column 22"),
        "amount > 3": ("filter: unknown variable 'amount'", "column 1"),
    }
    for text, (what, where) in cases.items():
        p = await problem(h, key, "POST", "/api/v1/subscriptions", {**base, "filter": text})
        assert p["status"] == 422 and what in p["detail"] and where in p["detail"], p
    p = await problem(h, key, "POST", "/api/v1/subscriptions", {**base, "transform": '{"a": '})
    assert p["status"] == 422 and p["detail"].startswith("transform: does not compile"), p
    p = await problem(h, key, "POST", "/api/v1/segments", {"name": "a", "expression": "data.x +"})
    assert p["status"] == 422 and p["detail"].startswith("expression: syntax error"), p
    await h.post(key, "/api/v1/segments", {"name": "a", "expression": "data.x == 1"})
    p = await problem(h, key, "POST", "/api/v1/segments", {"name": "a", "expression": "true"})
    assert p["status"] == 409, p
    nested = {"name": "b", "expression": 'segment("a")'}
    p = await problem(h, key, "POST", "/api/v1/segments", nested)
    assert p["status"] == 422 and "another segment" in p["detail"], p
    p = await problem(h, key, "POST", "/api/v1/subscriptions/preview", {"filter": "true"})
    assert p["status"] == 422 and p["detail"].startswith("event:"), p


async def test_transformation_is_what_is_sent_and_signed(
    harness: Harness, receiver_factory: Any
) -> None:
    """The receiver verifies the signature with the standardwebhooks package (conftest)."""
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source, secret, ep_id, receiver.secret = await wire(h, key, receiver.url)
    legacy = '{"total": amount, "cur": $lowercase(currency), "kind": $event.type}'
    await h.post(
        key,
        "/api/v1/subscriptions",
        {"endpoint_id": ep_id, "event_types": ["*"], "transform": legacy},
    )
    await send(h, source, secret, "t1", {"amount": 7, "currency": "EUR"}, "payment.succeeded")
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0][1]["data"] == {
        "total": 7,
        "cur": "eur",
        "kind": "payment.succeeded",
    }


async def test_failing_transformation_is_a_failed_attempt_with_its_reason(
    harness: Harness, receiver_factory: Any
) -> None:
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source, secret, ep_id, receiver.secret = await wire(h, key, receiver.url)
    await h.client.patch(
        f"/api/v1/endpoints/{ep_id}", json={"retry_schedule": [0]}, headers=h.auth(key)
    )
    runaway = "($f := function($n){$f($n+1)}; $f(1))"
    await h.post(
        key,
        "/api/v1/subscriptions",
        {"endpoint_id": ep_id, "event_types": ["*"], "transform": runaway},
    )
    await send(h, source, secret, "f1", {"a": 1}, "booking.created")

    async def failed() -> bool:
        listing = (await h.get(key, "/api/v1/deliveries", endpoint_id=ep_id)).json()["data"]
        return bool(listing) and listing[0]["status"] == "dead"

    await eventually(failed)
    delivery = (await h.get(key, "/api/v1/deliveries", endpoint_id=ep_id)).json()["data"][0]
    attempts = (await h.get(key, f"/api/v1/deliveries/{delivery['id']}/attempts")).json()["data"]
    assert attempts[0]["error"].startswith("transformation failed:"), attempts
    assert receiver.received == []


async def test_preview_shows_match_output_and_cost(harness: Harness) -> None:
    h = harness
    key = await h.tenant()
    ep = await h.post(key, "/api/v1/endpoints", {"url": "http://example.com/hook"})
    sub = await h.post(
        key,
        "/api/v1/subscriptions",
        {
            "endpoint_id": ep["endpoint"]["id"],
            "event_types": ["payment.*"],
            "filter": 'data.amount > 1000 && data.tags.exists(t, t == "vip")',
            "transform": '{"eur": amount / 100}',
        },
    )
    event = {"type": "payment.succeeded", "data": {"amount": 2500, "tags": ["vip"]}}
    r = await h.client.post(
        f"/api/v1/subscriptions/{sub['id']}/preview", json={"event": event}, headers=h.auth(key)
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["matched"] and out["filter_outcome"] == "match" and out["output"] == {"eur": 25}
    assert 0 < out["cost_bound"] <= out["cost_limit"]
    r = await h.client.post(
        "/api/v1/subscriptions/preview",
        json={"filter": "data.missing == 1", "event": event},
        headers=h.auth(key),
    )
    out = r.json()
    assert not out["matched"] and out["filter_outcome"] == "error", out
    assert "missing" in out["filter_error"]


async def test_replay_goes_where_routing_would_and_transforms(
    harness: Harness, receiver_factory: Any
) -> None:
    h = harness
    key = await h.tenant()
    receiver = await receiver_factory()
    source, secret, ep_id, receiver.secret = await wire(h, key, receiver.url)
    await send(h, source, secret, "r1", {"amount": 5}, "payment.succeeded")
    await send(h, source, secret, "r2", {"amount": 5000}, "payment.succeeded")
    # Routed (to nothing) before the subscription exists: else the router, if it came after,
    # would deliver the big one itself and the replay would find it sent already.
    await eventually(lambda: routed_all(h))
    listed = (await h.get(key, "/api/v1/events")).json()["data"]
    by_amount = {json_amount(e): e["id"] for e in listed}
    await h.post(
        key,
        "/api/v1/subscriptions",
        {
            "endpoint_id": ep_id,
            "event_types": ["*"],
            "filter": "data.amount > 1000",
            "transform": '{"big": amount}',
        },
    )
    for amount, queued in ((5, 0), (5000, 1)):
        r = await h.client.post(f"/api/v1/events/{by_amount[amount]}/replay", headers=h.auth(key))
        assert r.status_code == 202 and r.json()["queued"] == queued, r.text
    await eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0][1]["data"] == {"big": 5000}


async def routed_all(h: Harness) -> bool:
    with system_scope("test: the log's head"):
        async with h.system.db.read() as conn:
            head = (await conn.execute(sa.select(sa.func.max(events.c.seq)))).scalar() or 0
        return await h.system.events.position("router") >= head


def json_amount(event: dict[str, Any]) -> int:
    return int(event["data"]["amount"])
