"""Pull endpoints in process (SQLite by default; INTERLINK_TEST_BACKEND=postgres for
PostgreSQL): claims, acks and nacks over the API, leases that lapse, ordered keys, dead letters
and redrive, consumers that share an endpoint, long polls woken by publishing, and every refusal
settling nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from tests.canary import Sweep
from tests.integration.conftest import ADMIN, Harness, running, settings_for

Json = dict[str, Any]


async def pull_endpoint(h: Harness, key: str, types: list[str], **config: Any) -> str:
    ep = await h.post(key, "/api/v1/endpoints", {"kind": "pull", **config})
    assert ep["endpoint"]["kind"] == "pull" and ep["endpoint"]["url"] is None
    endpoint_id = str(ep["endpoint"]["id"])
    await h.post(key, "/api/v1/subscriptions", {"endpoint_id": endpoint_id, "event_types": types})
    return endpoint_id


async def publish(h: Harness, key: str, events: list[Json]) -> list[str]:
    r = await h.client.post("/api/v1/events/batch", json={"events": events}, headers=h.auth(key))
    assert r.status_code == 202, r.text
    return [e["id"] for e in r.json()["data"]]


async def claim(h: Harness, key: str, endpoint_id: str, **body: Any) -> httpx.Response:
    return await h.client.post(
        f"/api/v1/endpoints/{endpoint_id}/claims", json=body, headers=h.auth(key)
    )


async def claimed(h: Harness, key: str, endpoint_id: str, **body: Any) -> list[Json]:
    r = await claim(h, key, endpoint_id, **body)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def answer(h: Harness, key: str, verb: str, c: Json, **body: Any) -> httpx.Response:
    return await h.client.post(
        f"/api/v1/deliveries/{c['delivery_id']}/{verb}",
        json={"lease_id": c["lease_id"], **body},
        headers=h.auth(key),
    )


async def attempts(h: Harness, key: str, delivery_id: str) -> list[Json]:
    r = await h.get(key, f"/api/v1/deliveries/{delivery_id}/attempts")
    return list(r.json()["data"])


async def test_claim_then_ack_settles_once(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["booking.*"])
    (event_id,) = await publish(
        harness,
        key,
        [{"type": "booking.confirmed", "data": {"n": 1}, "key": "b-1", "occurred_at": 1.7e9}],
    )
    (c,) = await claimed(harness, key, ep, wait_seconds=5)
    assert c["event_id"] == event_id and c["type"] == "booking.confirmed"
    assert c["data"] == {"n": 1} and c["key"] == "b-1" and c["attempt"] == 1
    assert c["occurred_at"] == "2023-11-14T22:13:20Z" and c["received_at"]
    assert c["lease_id"].startswith("lse_") and c["lease_expires_at"]
    assert await claimed(harness, key, ep) == []  # leased to us
    r = await answer(harness, key, "ack", c)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    again = await answer(harness, key, "ack", c)
    assert again.status_code == 409 and "settled already" in again.json()["detail"]
    assert len(await attempts(harness, key, c["delivery_id"])) == 1


async def test_refusals_settle_nothing(harness: Harness, receiver_factory: Any) -> None:
    key, other = await harness.tenant("a"), await harness.tenant("b")
    ep = await pull_endpoint(harness, key, ["order.*"])
    receiver = await receiver_factory()
    push = await harness.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = push["secret"]
    push_id = push["endpoint"]["id"]
    await harness.post(key, "/api/v1/subscriptions", {"endpoint_id": push_id, "event_types": ["*"]})
    await publish(harness, key, [{"type": "order.placed", "data": {}}])
    (c,) = await claimed(harness, key, ep, wait_seconds=5)

    r = await claim(harness, key, push_id)
    assert r.status_code == 409 and "push endpoint" in r.json()["detail"]
    assert (await claim(harness, key, "ep_unknown")).status_code == 404
    assert (await claim(harness, other, ep)).status_code == 404  # another tenant's
    assert (await claim(harness, ADMIN, ep)).status_code == 403
    assert (await claim(harness, key, ep, max=101)).status_code == 400
    assert (await answer(harness, other, "ack", c)).status_code == 404
    assert (await answer(harness, ADMIN, "ack", c)).status_code == 403
    forged = c | {"lease_id": "lse_0x1.0p+0"}
    r = await answer(harness, key, "nack", forged)
    assert r.status_code == 409 and "nothing was settled" in r.json()["detail"]
    assert (await answer(harness, key, "ack", c | {"lease_id": "nonsense"})).status_code == 409
    assert await attempts(harness, key, c["delivery_id"]) == []

    deliveries = (await harness.get(key, "/api/v1/deliveries", endpoint_id=push_id)).json()
    (pushed,) = deliveries["data"]
    r = await harness.client.post(
        f"/api/v1/deliveries/{pushed['id']}/ack",
        json={"lease_id": c["lease_id"]},
        headers=harness.auth(key),
    )
    assert r.status_code == 409 and "push endpoint" in r.json()["detail"]
    assert (await answer(harness, key, "ack", c)).status_code == 200  # the real lease still holds


async def test_nacks_retry_then_dead_letter_then_redrive(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], retry_schedule=[0, 0.2])
    await publish(harness, key, [{"type": "x.y", "data": {}}])
    (c,) = await claimed(harness, key, ep, wait_seconds=5)
    r = await answer(harness, key, "nack", c, error="handler failed")
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    (c2,) = await claimed(harness, key, ep, wait_seconds=5)  # woken when the retry is due
    assert c2["delivery_id"] == c["delivery_id"] and c2["attempt"] == 2
    r = await answer(harness, key, "nack", c2, error="still failing")
    assert r.json()["status"] == "dead" and r.json()["last_error"] == "still failing"
    dead = (await harness.get(key, "/api/v1/deliveries", status="dead")).json()["data"]
    assert [d["id"] for d in dead] == [c["delivery_id"]]
    errors = [a["error"] for a in await attempts(harness, key, c["delivery_id"])]
    assert errors == ["handler failed", "still failing"]
    r = await harness.client.post(
        f"/api/v1/deliveries/{c['delivery_id']}/retry", headers=harness.auth(key)
    )
    assert r.status_code == 202, r.text
    (c3,) = await claimed(harness, key, ep, wait_seconds=5)
    assert c3["delivery_id"] == c["delivery_id"] and c3["attempt"] == 3
    assert (await answer(harness, key, "ack", c3)).json()["status"] == "succeeded"


async def test_a_lapsed_lease_is_claimed_again_and_the_old_holder_gets_409(
    harness: Harness,
) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"])
    await publish(harness, key, [{"type": "x.y", "data": {}}])
    (first,) = await claimed(harness, key, ep, wait_seconds=5, lease_seconds=1)
    (second,) = await claimed(harness, key, ep, wait_seconds=5)  # after the lease lapses
    assert second["delivery_id"] == first["delivery_id"] and second["attempt"] == 1
    assert second["lease_id"] != first["lease_id"]
    r = await answer(harness, key, "ack", first)
    assert r.status_code == 409 and "another claim holds it" in r.json()["detail"]
    assert await attempts(harness, key, first["delivery_id"]) == []
    assert (await answer(harness, key, "ack", second)).status_code == 200


async def test_an_ordered_pull_endpoint_hands_out_one_head_per_key(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], ordering="ordered")
    keys = ["a", "b", "a", "b", "a"]
    ids = await publish(
        harness, key, [{"type": "x.y", "data": {"i": i}, "key": k} for i, k in enumerate(keys)]
    )
    seen: list[str] = []
    while len(seen) < len(ids):
        batch = await claimed(harness, key, ep, max=100, wait_seconds=5)
        assert len({c["key"] for c in batch}) == len(batch)  # never two of one key at once
        for c in batch:
            seen.append(c["event_id"])
            assert (await answer(harness, key, "ack", c)).status_code == 200
    for k in ("a", "b"):
        mine = [i for i, kk in zip(ids, keys, strict=True) if kk == k]
        assert [e for e in seen if e in mine] == mine


async def test_consumers_sharing_an_endpoint_never_hold_one_delivery_at_once(
    harness: Harness,
) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], concurrency=1000)
    ids = await publish(harness, key, [{"type": "x.y", "data": {"i": i}} for i in range(200)])
    got: list[str] = []
    held: set[str] = set()  # deliveries some consumer holds right now

    async def consumer() -> None:
        while len(got) < len(ids):
            batch = await claimed(harness, key, ep, max=7, wait_seconds=1)
            for c in batch:
                assert c["delivery_id"] not in held
                held.add(c["delivery_id"])
            for c in batch:
                got.append(c["event_id"])
                await asyncio.sleep(0.001)
                held.discard(c["delivery_id"])
                assert (await answer(harness, key, "ack", c)).status_code == 200

    await asyncio.wait_for(asyncio.gather(*(consumer() for _ in range(6))), 60)
    assert len(got) == len(set(got)) and sorted(got) == sorted(ids)


async def test_a_long_poll_is_woken_by_a_publish_not_by_polling(
    tmp_path: Path, canary: Sweep
) -> None:
    # A slow poll (5 s): an answer within a second can only be routing's wake-up.
    async with running(settings_for(tmp_path, poll_interval_seconds=5.0), canary) as h:
        key = await h.tenant()
        ep = await pull_endpoint(h, key, ["*"])
        waiting = asyncio.create_task(claimed(h, key, ep, wait_seconds=20))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await publish(h, key, [{"type": "x.y", "data": {}}])
        published = time.monotonic()
        (c,) = await asyncio.wait_for(waiting, 5)
        latency = time.monotonic() - published
        print(f"long poll answered {latency * 1000:.0f} ms after the publish's answer")
        assert latency < 1.0 and c["type"] == "x.y"


async def test_many_waiters_cost_one_query_an_interval_and_stop_at_shutdown(
    harness: Harness,
) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"])
    waiters = harness.system.pull_waiters
    before = waiters.probes
    polls = [asyncio.create_task(claimed(harness, key, ep, wait_seconds=30)) for _ in range(20)]
    await asyncio.sleep(2.0)  # 10 poll intervals of 0.2 s
    probes = waiters.probes - before
    print(f"20 long polls for 2 s: {probes} probe queries")
    assert 1 <= probes <= 15  # one an interval, not one a waiter (that would be ~200)
    started = time.monotonic()
    harness.system.stopping()
    answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
    assert answers == [[]] * 20 and time.monotonic() - started < 2


async def test_a_lease_is_extended_under_its_lease_id_only(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["booking.*"])
    await publish(harness, key, [{"type": "booking.confirmed", "data": {}}])
    (c,) = await claimed(harness, key, ep, wait_seconds=5, lease_seconds=1)
    path = f"/api/v1/deliveries/{c['delivery_id']}/lease"
    r = await harness.client.post(
        path, json={"lease_id": c["lease_id"], "lease_seconds": 60}, headers=harness.auth(key)
    )
    assert r.status_code == 200, r.text
    extended = r.json()
    assert extended["lease_id"] != c["lease_id"] and extended["lease_expires_at"]
    await asyncio.sleep(1.5)  # past the first lease: still ours
    assert await claimed(harness, key, ep) == []
    stale = {"lease_id": c["lease_id"]}
    refused = await harness.client.post(path, json=stale, headers=harness.auth(key))
    assert refused.status_code == 409, refused.text
    assert (await answer(harness, key, "ack", c)).status_code == 409  # the old lease: nothing
    acked = await answer(harness, key, "ack", c | {"lease_id": extended["lease_id"]})
    assert acked.status_code == 200 and acked.json()["status"] == "succeeded"
    other = await harness.tenant("other")
    missing = await harness.client.post(
        path, json={"lease_id": extended["lease_id"]}, headers=harness.auth(other)
    )
    assert missing.status_code == 404
