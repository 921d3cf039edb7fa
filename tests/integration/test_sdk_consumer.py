"""The SDK's ``Consumer`` against a real Interlink in process (SQLite by default;
INTERLINK_TEST_BACKEND=postgres for PostgreSQL): handlers by type pattern, acks and nacks with
the handler's error, per-key order with concurrency, a stop that finishes what runs and
releases what waits, and fatal answers raised rather than retried for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from tests.integration.conftest import Harness
from tests.integration.test_pull import attempts, publish, pull_endpoint

from interlink_client import Consumer, Hooks, Message, NotFound, Retry


def consumer_for(harness: Harness, key: str, endpoint_id: str, **options: Any) -> Consumer:
    transport = httpx.ASGITransport(app=harness.system)
    options = {"wait_seconds": 1.0, "shutdown_seconds": 5.0} | options
    return Consumer("http://interlink", key, endpoint_id, transport=transport, **options)


async def run_until(app: Consumer, done: Any, timeout: float = 20.0) -> None:
    runner = asyncio.create_task(app.run(signals=False))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and not runner.done():
        await asyncio.sleep(0.05)
    app.stop()
    await asyncio.wait_for(runner, 15)
    assert done()


async def test_handlers_by_pattern_ack_and_nack_with_the_error(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], retry_schedule=[0, 0])
    ids = await publish(
        harness,
        key,
        [
            {"type": "booking.confirmed", "data": {"n": 1}},
            {"type": "booking.failed", "data": {"n": 2}},
            {"type": "invoice.paid", "data": {"n": 3}},
        ],
    )
    app = consumer_for(harness, key, ep)
    seen: list[tuple[str, int, int]] = []
    failures = 0

    @app.handler("booking.failed")
    async def fails(m: Message) -> None:
        nonlocal failures
        failures += 1
        if failures == 1:
            raise RuntimeError("the database is down")
        seen.append((m.type, m.data["n"], m.attempt))

    @app.handler("booking.*")
    def confirmed(m: Message) -> None:  # a plain function runs in a thread
        seen.append((m.type, m.data["n"], m.attempt))

    await run_until(app, lambda: len(seen) == 2 and app.stats.unmatched == 1)
    assert sorted(seen) == [("booking.confirmed", 1, 1), ("booking.failed", 2, 2)]
    assert (app.stats.handled, app.stats.failed, app.stats.unmatched) == (2, 1, 1)
    r = await harness.get(key, "/api/v1/deliveries", endpoint_id=ep)
    assert sorted(d["status"] for d in r.json()["data"]) == ["succeeded"] * 3
    failed = next(d for d in r.json()["data"] if d["event_id"] == ids[1])
    tries = await attempts(harness, key, failed["id"])
    assert [a["outcome"] for a in tries] == ["failed", "succeeded"]
    assert tries[0]["error"] == "RuntimeError: the database is down"


async def test_concurrency_keeps_each_keys_order(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], ordering="ordered", concurrency=50)
    events = [{"type": "t", "key": f"k{n % 5}", "data": {"n": n}} for n in range(60)]
    await publish(harness, key, events)
    app = consumer_for(harness, key, ep, concurrency=8)
    handled: dict[str, list[int]] = {}
    running = 0
    most = 0

    @app.handler()
    async def slow(m: Message) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        assert m.key is not None
        handled.setdefault(m.key, []).append(m.data["n"])

    await run_until(app, lambda: sum(map(len, handled.values())) == 60)
    for k, ns in handled.items():
        assert ns == sorted(ns), k
    assert 1 < most <= 5  # several keys at once, never above the keys (ordered: heads only)


async def test_retry_delays_the_next_try(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], retry_schedule=[0, 0])
    await publish(harness, key, [{"type": "t", "data": {}}])
    app = consumer_for(harness, key, ep)
    tries: list[float] = []

    @app.handler()
    async def later(m: Message) -> None:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise Retry("not yet", after=1.5)

    await run_until(app, lambda: len(tries) == 2)
    assert tries[1] - tries[0] >= 1.4


async def test_a_stop_finishes_running_handlers_and_releases_the_rest(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"], retry_schedule=[0, 0, 0])
    await publish(harness, key, [{"type": "t", "data": {"n": n}} for n in range(2)])
    released: list[str] = []

    class Released(Hooks):
        def released(self, message: Message) -> None:
            released.append(message.delivery_id)

    app = consumer_for(harness, key, ep, concurrency=2, shutdown_seconds=0.5, hooks=Released())
    started: list[int] = []
    finished: list[int] = []

    @app.handler()
    async def handle(m: Message) -> None:
        started.append(m.data["n"])
        # n = 0 finishes within the shutdown deadline, n = 1 does not: cancelled, released
        await asyncio.sleep(0.2 if m.data["n"] == 0 else 30)
        finished.append(m.data["n"])

    runner = asyncio.create_task(app.run(signals=False))
    while len(started) < 2:
        await asyncio.sleep(0.02)
    app.stop()
    await asyncio.wait_for(runner, 10)
    assert finished == [0] and len(released) == 1
    r = await harness.get(key, "/api/v1/deliveries", endpoint_id=ep)
    by_status = sorted(d["status"] for d in r.json()["data"])
    # released: due again at once for another consumer, its error saying why
    assert by_status == ["pending", "succeeded"] or by_status == ["scheduled", "succeeded"]
    (waiting,) = [d for d in r.json()["data"] if d["status"] != "succeeded"]
    assert waiting["id"] == released[0] and "consumer stopped" in waiting["last_error"]


async def test_an_unknown_endpoint_is_raised_not_retried(harness: Harness) -> None:
    key = await harness.tenant()
    app = consumer_for(harness, key, "ep_missing")
    with pytest.raises(NotFound):
        await asyncio.wait_for(app.run(signals=False), 10)


async def test_a_handler_slower_than_its_lease_keeps_its_message(harness: Harness) -> None:
    key = await harness.tenant()
    ep = await pull_endpoint(harness, key, ["*"])
    await publish(harness, key, [{"type": "t", "data": {}}])
    slow = consumer_for(harness, key, ep, lease_seconds=1)
    other = consumer_for(harness, key, ep)
    handlings: list[str] = []

    @slow.handler()
    async def takes_long(m: Message) -> None:
        handlings.append("slow")
        await asyncio.sleep(2.5)  # 2.5 leases: extended each half lease

    @other.handler()
    async def would_take_it(m: Message) -> None:
        handlings.append("other")

    slow_run = asyncio.create_task(slow.run(signals=False))
    while not handlings:
        await asyncio.sleep(0.02)
    other_run = asyncio.create_task(other.run(signals=False))  # would claim a lapsed lease
    try:
        for _ in range(200):
            if slow.stats.handled == 1:
                break
            await asyncio.sleep(0.05)
    finally:
        slow.stop()
        await asyncio.wait_for(slow_run, 10)
        other.stop()
        await asyncio.wait_for(other_run, 10)
    assert handlings == ["slow"] and slow.stats.lease_lost == 0
    r = await harness.get(key, "/api/v1/deliveries", endpoint_id=ep)
    assert [d["status"] for d in r.json()["data"]] == ["succeeded"]
