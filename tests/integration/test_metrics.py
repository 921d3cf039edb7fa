"""/metrics after real traffic through the in-process harness: every counter exact.

The ingest counts (interlink_ingest_*) need the ingest route to call ``Metrics.ingest``
(wired in ingress/app.py); the delivery counts come through the dispatcher's on_settled hook
and the state gauges from the database, both wired in app.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.canary import Sweep
from tests.integration.conftest import ADMIN, Harness, eventually, signed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(h: Harness, **headers: str) -> Samples:
    r = await h.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def get(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def until(h: Harness, check: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """Scrapes until ``check`` holds (the state gauges are cached for two seconds)."""
    last: dict[str, Samples] = {}

    async def ok() -> bool:
        last["s"] = await scrape(h)
        return check(last["s"])

    await eventually(ok, timeout=timeout)
    return last["s"]


async def tenant_id(h: Harness, name: str) -> str:
    r = await h.get(ADMIN, "/api/v1/tenants")
    return next(t["id"] for t in r.json()["data"] if t["name"] == name)


async def endpoint(h: Harness, key: str, url: str, pattern: str, **body: Any) -> str:
    ep = await h.post(key, "/api/v1/endpoints", {"url": url, **body})
    await h.post(
        key,
        "/api/v1/subscriptions",
        {"endpoint_id": ep["endpoint"]["id"], "event_types": [pattern]},
    )
    return f"{ep['secret']}|{ep['endpoint']['id']}"


async def test_counters_match_the_traffic_exactly(harness: Harness, receiver_factory: Any) -> None:
    h = harness
    key = await h.tenant("acme")
    created = await h.post(key, "/api/v1/sources", {"name": "pms", "max_body_bytes": 1024})
    source, secret = created["source"]["id"], created["secrets"][0]
    ok = await receiver_factory()
    flaky = await receiver_factory(answers=[503])
    down = await receiver_factory(default=500)
    ok.secret, ok_id = (await endpoint(h, key, ok.url, "booking.*")).split("|")
    flaky.secret, flaky_id = (
        await endpoint(h, key, flaky.url, "flaky.*", retry_schedule=[0, 0.05])
    ).split("|")
    down.secret, down_id = (await endpoint(h, key, down.url, "down.*", retry_schedule=[0])).split(
        "|"
    )

    async def post(body: bytes, headers: dict[str, str], expect: int, to: str = source) -> None:
        r = await h.client.post(f"/in/{to}", content=body, headers=headers)
        assert r.status_code == expect, r.text

    # accepted: 5 bookings, one for the flaky endpoint, one for the one that is down
    for i in range(5):
        await post(*signed(secret, f"m{i}", {"type": "booking.created", "data": {"i": i}}), 202)
    await post(*signed(secret, "f1", {"type": "flaky.x", "data": {}}), 202)
    await post(*signed(secret, "d1", {"type": "down.x", "data": {}}), 202)
    # duplicates: the same partner ids again
    for i in range(2):
        await post(*signed(secret, f"m{i}", {"type": "booking.created", "data": {"i": i}}), 202)
    # rejections of a known source
    ok_payload = {"type": "booking.created", "data": {}}
    await post(*signed("whsec_" + "A" * 44, "r1", ok_payload), 401)
    await post(*signed("whsec_" + "B" * 44, "r2", ok_payload), 401)
    await post(*signed(secret, "r3", ok_payload, at=time.time() - 3600), 401)  # stale
    await post(*signed(secret, "r4", {"type": "x", "pad": "a" * 2000}), 413)
    await post(*signed(secret, "r5", b'{"type": '), 400)
    await post(*signed(secret, "r6", [1, 2]), 400)
    await post(*signed(secret, "r7", {"data": {}}), 422)
    # rejections before any source is known: counted under source_id="unknown"
    await post(b"{}", {}, 404, to="src_nope")
    await post(b"{}", {}, 404, to="src_0192_not_a_source")
    assert (await h.client.get(f"/in/{source}")).status_code == 405

    await eventually(lambda: len(ok.received) == 5 and len(flaky.received) == 2)
    await eventually(lambda: len(down.received) == 1)
    tenant = await tenant_id(h, "acme")

    def settled(s: Samples) -> bool:
        return (
            get(s, "interlink_deliveries_total", endpoint_id=down_id, result="dead") == 1
            and get(s, "interlink_deliveries_total", endpoint_id=flaky_id, result="succeeded") == 1
            and get(s, "interlink_dead_letter_size", endpoint_id=down_id) == 1
            and sum(v for (name, _), v in s.items() if name == "interlink_delivery_backlog") == 0
            and get(s, "interlink_router_lag_events") == 0
        )

    s = await until(h, settled)

    requests = "interlink_ingest_requests_total"
    assert get(s, requests, source_id=source, outcome="accepted") == 7
    assert get(s, requests, source_id=source, outcome="duplicate") == 2
    assert get(s, requests, source_id=source, outcome="rejected") == 7
    assert get(s, requests, source_id="unknown", outcome="rejected") == 3
    rejections = "interlink_ingest_rejections_total"
    assert get(s, rejections, source_id=source, reason="signature") == 3
    assert get(s, rejections, source_id=source, reason="too_large") == 1
    assert get(s, rejections, source_id=source, reason="malformed") == 2
    assert get(s, rejections, source_id=source, reason="envelope") == 1
    assert get(s, rejections, source_id="unknown", reason="unknown_source") == 2
    assert get(s, rejections, source_id="unknown", reason="method") == 1
    assert {labels for (name, labels) in s if name == requests} == {
        frozenset({("source_id", source), ("outcome", o)})
        for o in ("accepted", "duplicate", "rejected")
    } | {frozenset({("source_id", "unknown"), ("outcome", "rejected")})}
    assert get(s, "interlink_ingest_ack_seconds_count") == 9  # the 202 answers

    attempts = "interlink_delivery_attempts_total"
    assert get(s, attempts, endpoint_id=ok_id, status_class="2xx") == 5
    assert get(s, attempts, endpoint_id=flaky_id, status_class="5xx") == 1
    assert get(s, attempts, endpoint_id=flaky_id, status_class="2xx") == 1
    assert get(s, attempts, endpoint_id=down_id, status_class="5xx") == 1
    assert sum(v for (name, _), v in s.items() if name == attempts) == 8
    results = "interlink_deliveries_total"
    assert get(s, results, endpoint_id=ok_id, result="succeeded") == 5
    assert get(s, results, endpoint_id=flaky_id, result="retried") == 1
    assert get(s, results, endpoint_id=flaky_id, result="succeeded") == 1
    assert get(s, results, endpoint_id=down_id, result="dead") == 1
    assert sum(v for (name, _), v in s.items() if name == results) == 8
    assert get(s, "interlink_delivery_attempt_seconds_count", endpoint_id=ok_id) == 5
    assert get(s, "interlink_delivery_end_to_end_seconds_count") == 6

    for ep in (ok_id, flaky_id, down_id):
        for status in ("pending", "scheduled", "in_flight"):
            assert get(s, "interlink_delivery_backlog", endpoint_id=ep, status=status) == 0
        assert get(s, "interlink_delivery_oldest_pending_age_seconds", endpoint_id=ep) == 0
        assert get(s, "interlink_endpoint_status", endpoint_id=ep, status="active") == 1
        assert get(s, "interlink_endpoint_status", endpoint_id=ep, status="paused") == 0
        assert get(s, "interlink_endpoint_info", endpoint_id=ep, tenant_id=tenant) == 1
    assert get(s, "interlink_dead_letter_size", endpoint_id=ok_id) == 0
    assert get(s, "interlink_source_info", source_id=source, tenant_id=tenant, name="pms") == 1


async def test_state_gauges_read_the_database(harness: Harness, receiver_factory: Any) -> None:
    """Backlog and event lag of a paused endpoint; router lag; status after a 410; deletion."""
    h = harness
    key = await h.tenant("acme")
    created = await h.post(key, "/api/v1/sources", {"name": "pms"})
    source, secret = created["source"]["id"], created["secrets"][0]
    receiver = await receiver_factory()
    receiver.secret, paused_id = (
        await endpoint(h, key, receiver.url, "booking.*", status="paused")
    ).split("|")
    gone = await receiver_factory(default=410)
    gone.secret, gone_id = (await endpoint(h, key, gone.url, "gone.*")).split("|")
    for i in range(3):
        body, headers = signed(secret, f"m{i}", {"type": "booking.created", "data": {}})
        assert (await h.client.post(f"/in/{source}", content=body, headers=headers)).status_code
    body, headers = signed(secret, "g1", {"type": "gone.x", "data": {}})
    await h.client.post(f"/in/{source}", content=body, headers=headers)

    def backlog(s: Samples) -> bool:
        return (
            get(s, "interlink_delivery_backlog", endpoint_id=paused_id, status="pending") == 3
            and (
                get(s, "interlink_delivery_oldest_pending_age_seconds", endpoint_id=paused_id) or 0
            )
            > 0.5
            and get(s, "interlink_endpoint_status", endpoint_id=gone_id, status="disabled") == 1
        )

    await h.client.get("/metrics")  # a scrape right away: the gauges are cached, then refreshed
    s = await until(h, backlog)
    assert get(s, "interlink_endpoint_status", endpoint_id=paused_id, status="paused") == 1
    assert get(s, "interlink_endpoint_status", endpoint_id=gone_id, status="active") == 0
    assert get(s, "interlink_dead_letter_size", endpoint_id=gone_id) == 1
    assert get(s, "interlink_router_lag_events") == 0
    assert (
        get(s, "interlink_delivery_attempts_total", endpoint_id=gone_id, status_class="gone") == 1
    )

    # A deleted endpoint's series go: nothing is sent to it any more.
    r = await h.client.delete(f"/api/v1/endpoints/{paused_id}", headers=h.auth(key))
    assert r.status_code in (200, 204)
    s = await until(h, lambda s: not [k for k in s if ("endpoint_id", paused_id) in k[1]])
    assert get(s, "interlink_endpoint_status", endpoint_id=gone_id, status="disabled") == 1


async def test_metrics_token(
    tmp_path: Any,
    monkeypatch: Any,
    receiver_factory: Callable[..., Awaitable[Any]],
    canary: Sweep,
) -> None:
    from tests.integration.conftest import client_for, settings_for

    from interlink.app import Interlink

    monkeypatch.chdir(tmp_path)
    system = Interlink(settings_for(tmp_path, metrics_token="scrape-me", volume_monitor=False))
    await system.start()
    try:
        async with client_for(system, canary) as client:
            refused = await client.get("/metrics")
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert refused.headers["content-type"] == "application/problem+json"
            assert "metrics token" in refused.json()["detail"] and refused.json()["type"]
            wrong_method = await client.post("/metrics")
            assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
            assert wrong_method.json()["status"] == 405
            h = Harness(system, client)
            assert await scrape(h, authorization="Bearer scrape-me")
            # The management API's keys are no metrics token, and the token opens nothing else.
            r = await client.get("/metrics", headers={"authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 401
            r = await client.get("/api/v1/tenants", headers={"authorization": "Bearer scrape-me"})
            assert r.status_code == 401
    finally:
        await system.stop()


async def test_a_failing_scrape_is_a_problem_with_a_request_id(
    tmp_path: Any, monkeypatch: Any, canary: Sweep
) -> None:
    """An error nobody foresaw while scraping is logged under an id and answered as
    problem+json, as everywhere else, not as a bare 500."""
    from tests.integration.conftest import client_for, settings_for

    from interlink.app import Interlink
    from interlink.observability.metrics import StateCollector

    async def broken(self: StateCollector) -> None:
        raise RuntimeError("the state query failed")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(StateCollector, "refresh", broken)
    system = Interlink(settings_for(tmp_path, volume_monitor=False))
    await system.start()
    try:
        async with client_for(system, canary) as client:
            r = await client.get("/metrics")
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/problem+json"
            request_id = r.headers["x-request-id"]
            assert request_id in r.json()["detail"]
            assert "state query" not in r.text  # the cause stays in the log
    finally:
        await system.stop()
