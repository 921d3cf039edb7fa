"""Delivery in process: retries on the durable schedule, Retry-After, paused endpoints,
replay, and a restart that resumes what was scheduled."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from tests.canary import Sweep
from tests.integration.conftest import (
    Harness,
    client_for,
    database_backend,
    eventually,
    settings_for,
    signed,
)

from interlink.app import Interlink


async def wire(h: Harness, key: str, url: str, **endpoint: object) -> tuple[str, str, str]:
    """A source, an endpoint and a catch-all subscription; returns source, secret, endpoint."""
    source = await h.post(key, "/api/v1/sources", {"name": "pms"})
    ep = await h.post(key, "/api/v1/endpoints", {"url": url, **endpoint})
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    return source["source"]["id"], source["secrets"][0], ep["secret"] + "|" + ep["endpoint"]["id"]


async def send(
    h: Harness, source: str, secret: str, msg: str, kind: str = "booking.created"
) -> str:
    body, headers = signed(secret, msg, {"type": kind, "data": {"msg": msg}})
    r = await h.client.post(f"/in/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_retry_after_is_honoured(harness: Harness, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory(answers=[429], headers={"Retry-After": "1"})
    source, secret, ep = await wire(harness, key, receiver.url, retry_schedule=[0, 0.05, 0.05])
    receiver.secret, endpoint_id = ep.split("|")
    await send(harness, source, secret, "m1")
    await eventually(lambda: len(receiver.received) == 2, timeout=5)
    attempts = (await harness.get(key, "/api/v1/deliveries", endpoint_id=endpoint_id)).json()
    delivery = attempts["data"][0]
    listing = (await harness.get(key, f"/api/v1/deliveries/{delivery['id']}/attempts")).json()
    first, second = listing["data"]
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["started_at"])
    assert first["status_code"] == 429 and second["status_code"] == 200
    assert gap.total_seconds() >= 0.9  # Retry-After: 1 outweighs the 0.05 s schedule
    assert receiver.received[0][0] == receiver.received[1][0]  # the same webhook-id


async def test_paused_endpoint_keeps_deliveries_until_enabled(
    harness: Harness, receiver_factory
) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory()
    source, secret, ep = await wire(harness, key, receiver.url, status="paused")
    receiver.secret, endpoint_id = ep.split("|")
    ids = {await send(harness, source, secret, f"m{i}") for i in range(5)}
    await eventually(lambda: _count(harness, key, endpoint_id, "pending", 5), timeout=5)
    assert receiver.received == []
    r = await harness.client.patch(
        f"/api/v1/endpoints/{endpoint_id}", json={"status": "active"}, headers=harness.auth(key)
    )
    assert r.status_code == 200
    await eventually(lambda: {m for m, _ in receiver.received} == ids, timeout=5)


async def _count(h: Harness, key: str, endpoint_id: str, status: str, n: int) -> bool:
    r = await h.get(key, "/api/v1/deliveries", endpoint_id=endpoint_id, status=status)
    return len(r.json()["data"]) == n


async def test_replay_resends_with_the_same_webhook_id(harness: Harness, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory()
    source, secret, ep = await wire(harness, key, receiver.url)
    receiver.secret, _ = ep.split("|")
    event_id = await send(harness, source, secret, "m1")
    await eventually(lambda: len(receiver.received) == 1)
    r = await harness.client.post(f"/api/v1/events/{event_id}/replay", headers=harness.auth(key))
    assert r.status_code == 202 and r.json()["queued"] == 1
    await eventually(lambda: len(receiver.received) == 2)
    assert receiver.received[0][0] == receiver.received[1][0] == event_id


async def test_restart_resumes_scheduled_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver_factory, canary: Sweep
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    receiver = await receiver_factory(answers=[503])
    settings = settings_for(tmp_path)
    first = Interlink(settings)
    await first.start()
    async with client_for(first, canary) as c:
        h = Harness(first, c)
        key = await h.tenant()
        source, secret, ep = await wire(h, key, receiver.url, retry_schedule=[0, 2])
        receiver.secret, endpoint_id = ep.split("|")
        await send(h, source, secret, "m1")
        await eventually(lambda: _count(h, key, endpoint_id, "scheduled", 1))
    await first.stop()
    assert len(receiver.received) == 1

    second = Interlink(settings)
    await second.start()
    try:
        await eventually(lambda: len(receiver.received) == 2, timeout=8)
        async with client_for(second, canary) as c:
            h = Harness(second, c)
            await eventually(lambda: _count(h, key, endpoint_id, "succeeded", 1))
    finally:
        await second.stop()


@pytest.mark.skipif(
    database_backend() == "postgres",
    reason="the one-process lock is SQLite's; PostgreSQL scales out",
)
async def test_a_second_process_on_the_same_sqlite_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interlink.app import AlreadyRunning

    monkeypatch.chdir(tmp_path)
    settings = settings_for(tmp_path)
    first = Interlink(settings)
    await first.start()
    try:
        with pytest.raises(AlreadyRunning, match="another Interlink process"):
            await Interlink(settings).start()
    finally:
        await first.stop()
