"""The management API: auth, tenant isolation, write-only secrets, pagination, OpenAPI."""

from __future__ import annotations

from tests.integration.conftest import ADMIN, Harness, eventually, signed


async def test_auth_is_required_and_scoped(harness: Harness) -> None:
    c = harness.client
    assert (await c.get("/api/v1/sources")).status_code == 401
    r = await c.get("/api/v1/sources", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    key = await harness.tenant()
    r = await c.post("/api/v1/tenants", json={"name": "x"}, headers=harness.auth(key))
    assert r.status_code == 403
    r = await c.get("/api/v1/sources", headers=harness.auth(ADMIN))
    assert r.status_code == 403 and "tenant" in r.json()["detail"]


async def test_bad_bodies_get_4xx_with_the_reason(harness: Harness) -> None:
    """400 for what breaks the OpenAPI document; 422 for a rule it cannot state."""
    key = await harness.tenant()
    h = harness.auth(key)
    for broken in (b"{nope", b'{"url": "http://127.0.0.1:9/x"'):
        r = await harness.client.post("/api/v1/endpoints", content=broken, headers=h)
        assert r.status_code == 400 and "JSON is malformed" in r.json()["detail"]
    r = await harness.client.post(
        "/api/v1/endpoints", json={"url": "http://127.0.0.1:9/x", "colour": "red"}, headers=h
    )
    assert r.status_code == 400 and "colour" in r.json()["detail"]
    r = await harness.client.post(
        "/api/v1/subscriptions", json={"endpoint_id": "ep_x", "event_types": ["a..b"]}, headers=h
    )
    assert r.status_code == 422 and "a..b" in r.json()["detail"]
    r = await harness.client.post(
        "/api/v1/endpoints", json={"url": "ftp://example.com/x"}, headers=h
    )
    assert r.status_code == 422 and "scheme" in r.json()["detail"]
    r = await harness.client.post(
        "/api/v1/sources", json={"name": "s", "verifier": "rot13"}, headers=h
    )
    assert r.status_code == 422 and "rot13" in r.json()["detail"]
    r = await harness.get(key, "/api/v1/events", cursor="!!!")
    assert r.status_code == 422
    r = await harness.client.post(  # each bound holds; their order is a rule across fields
        "/api/v1/endpoints",
        json={
            "url": "http://127.0.0.1:9/x",
            "breaker": {"open_seconds": 60, "max_open_seconds": 30},
        },
        headers=h,
    )
    assert r.status_code == 422 and "max_open_seconds" in r.json()["detail"]
    r = await harness.client.post(
        "/api/v1/endpoints",
        json={"url": "http://127.0.0.1:9/x", "breaker": {"open_seconds": 0}},
        headers=h,
    )
    assert r.status_code == 400 and "open_seconds" in r.json()["detail"]
    r = await harness.get(key, "/api/v1/events", staus="dead")  # a typo is not ignored
    assert r.status_code == 400 and "staus" in r.json()["detail"]
    r = await harness.get(key, "/api/v1/deliveries", status="lost")
    assert r.status_code == 400
    r = await harness.get(key, "/api/v1/events", after="yesterday")
    assert r.status_code == 400 and "after" in r.json()["detail"]


async def test_secrets_are_write_only(harness: Harness, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory()
    source = await harness.post(key, "/api/v1/sources", {"name": "pms"})
    endpoint = await harness.post(key, "/api/v1/endpoints", {"url": receiver.url})
    source_secret, endpoint_secret = source["secrets"][0], endpoint["secret"]
    assert source_secret.startswith("whsec_") and endpoint_secret.startswith("whsec_")
    for path in (
        "/api/v1/sources",
        f"/api/v1/sources/{source['source']['id']}",
        "/api/v1/endpoints",
        f"/api/v1/endpoints/{endpoint['endpoint']['id']}",
    ):
        text = (await harness.get(key, path)).text
        assert source_secret not in text and endpoint_secret not in text
        assert "whsec_" not in text


async def test_another_tenants_ids_are_not_found(harness: Harness, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = await harness.tenant("a"), await harness.tenant("b")
    receiver = await receiver_factory()
    source = (await harness.post(a, "/api/v1/sources", {"name": "pms"}))["source"]["id"]
    endpoint = await harness.post(a, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = endpoint["secret"]
    endpoint_id = endpoint["endpoint"]["id"]
    sub = await harness.post(
        a, "/api/v1/subscriptions", {"endpoint_id": endpoint_id, "event_types": ["*"]}
    )
    secret = (await harness.client.get(f"/api/v1/sources/{source}", headers=harness.auth(a))).json()
    assert secret["id"] == source
    # one event and its delivery for tenant a
    created = await harness.post(a, "/api/v1/sources", {"name": "pms2"})
    body, headers = signed(created["secrets"][0], "m1", {"type": "booking.created", "data": {}})
    r = await harness.client.post(f"/in/{created['source']['id']}", content=body, headers=headers)
    event_id = r.json()["id"]
    await eventually(lambda: len(receiver.received) == 1)
    delivery_id = (await harness.get(a, "/api/v1/deliveries")).json()["data"][0]["id"]

    for path in (
        f"/api/v1/sources/{source}",
        f"/api/v1/endpoints/{endpoint_id}",
        f"/api/v1/subscriptions/{sub['id']}",
        f"/api/v1/events/{event_id}",
        f"/api/v1/deliveries/{delivery_id}",
        f"/api/v1/deliveries/{delivery_id}/attempts",
    ):
        r = await harness.get(b, path)
        assert r.status_code == 404, (path, r.text)
    for path in (f"/api/v1/deliveries/{delivery_id}/retry", f"/api/v1/events/{event_id}/replay"):
        r = await harness.client.post(path, headers=harness.auth(b))
        assert r.status_code == 404, path
    r = await harness.client.post(
        "/api/v1/subscriptions",
        json={"endpoint_id": endpoint_id, "event_types": ["*"]},
        headers=harness.auth(b),
    )
    assert r.status_code == 404
    r = await harness.client.patch(
        f"/api/v1/endpoints/{endpoint_id}", json={"status": "paused"}, headers=harness.auth(b)
    )
    assert r.status_code == 404
    for listing in ("sources", "endpoints", "subscriptions", "events", "deliveries"):
        assert (await harness.get(b, f"/api/v1/{listing}")).json()["data"] == []
    r = await harness.get(b, "/api/v1/tenants")
    assert r.status_code == 403


async def test_pagination_and_filters(harness: Harness) -> None:
    key = await harness.tenant()
    created = await harness.post(key, "/api/v1/sources", {"name": "pms"})
    source, secret = created["source"]["id"], created["secrets"][0]
    for i in range(7):
        kind = "booking.created" if i % 2 else "listing.updated"
        body, headers = signed(secret, f"m{i}", {"type": kind, "data": {"i": i}})
        assert (
            await harness.client.post(f"/in/{source}", content=body, headers=headers)
        ).status_code == 202
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await harness.get(key, "/api/v1/events", **params)).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)  # newest first
    bookings = (await harness.get(key, "/api/v1/events", type="booking.created")).json()["data"]
    assert len(bookings) == 3 and {e["type"] for e in bookings} == {"booking.created"}
    future = (await harness.get(key, "/api/v1/events", after="2100-01-01T00:00:00Z")).json()
    assert future["data"] == []
    one = (await harness.get(key, f"/api/v1/events/{seen[0]}")).json()
    assert one["data"] == {"i": 6} and one["headers"]["webhook-id"] == "m6"


async def test_openapi_document(harness: Harness) -> None:
    r = await harness.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/api/v1/tenants",
        "/api/v1/sources",
        "/api/v1/endpoints",
        "/api/v1/subscriptions",
        "/api/v1/events",
        "/api/v1/deliveries",
        "/api/v1/deliveries/{delivery_id}/retry",
        "/api/v1/events/{event_id}/replay",
    ):
        assert path in doc["paths"], path
    assert (await harness.client.get("/docs")).status_code == 200
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    assert (await harness.client.get("/readyz")).json() == {"status": "ready"}
