"""Delivery you can trust, end to end in process: ordering per key, a failing endpoint that
slows no other, its breaker, its recovery at its rate limit, disabled endpoints that keep
their deliveries, slow receivers, and operator events.

Events go straight into the log (the ingest path has its own tests); everything after it —
router, lanes, dispatcher, HTTP to real loopback receivers — is the real thing. Tests of long
schedules run on a ``ScaledClock``: an hour of breaker cool-downs passes in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from tests.integration.conftest import database_backend, eventually, settings_for

from interlink.app import Interlink
from interlink.clock import SYSTEM, Clock, ScaledClock
from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.ids import new_id
from interlink.domain.models import EndpointStatus, Event
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.rate_limit import RateLimit
from interlink.domain.retry import RetryPolicy
from interlink.storage.tables import attempts, deliveries
from interlink.storage.tenancy import system_scope

# status, seconds to wait before answering (None: never answer)
Answer = tuple[int, float | None]


@dataclass
class Arrival:
    at: float  # wall clock
    clock_at: float  # the system's clock (scaled or not)
    webhook_id: str
    data: dict[str, Any]
    status: int


@dataclass
class LaneReceiver:
    """A loopback receiver whose answer a test decides per request."""

    clock: Clock
    answer: Callable[[dict[str, Any]], Answer] = lambda _: (200, 0.0)
    arrivals: list[Arrival] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        payload = json.loads(await request.read())
        status, delay = self.answer(payload["data"])
        arrival = Arrival(
            time.time(), self.clock.now(), request.headers["webhook-id"], payload["data"], status
        )
        if delay is None:
            await asyncio.sleep(3600)  # never answers: the sender's timeout ends it
        elif delay:
            await asyncio.sleep(delay)
        self.arrivals.append(arrival)
        return web.Response(status=status)

    def acked(self) -> list[Arrival]:
        return [a for a in self.arrivals if 200 <= a.status < 300]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"


@dataclass
class World:
    system: Interlink
    clock: Clock
    tenant_id: str
    receivers: list[LaneReceiver] = field(default_factory=list)

    async def receiver(
        self, answer: Callable[[dict[str, Any]], Answer] | None = None
    ) -> LaneReceiver:
        r = LaneReceiver(self.clock) if answer is None else LaneReceiver(self.clock, answer)
        await r.start()
        self.receivers.append(r)
        return r

    async def endpoint(self, url: str, patterns: list[str], **options: Any) -> str:
        m = self.system.management
        retry = options.pop("retry", RetryPolicy())
        timeout = options.pop("timeout_seconds", 5.0)
        ep = await m.create_endpoint(
            self.tenant_id,
            url=url,
            description="",
            secret="whsec_" + "A" * 40,
            retry=retry,
            timeout_seconds=timeout,
            **options,
        )
        await m.create_subscription(self.tenant_id, ep.id, patterns)
        return ep.id

    async def inject(self, items: list[tuple[str, str | None, dict[str, Any]]]) -> None:
        """Appends events (type, key, data) to the log, as ingest would, and wakes the router."""
        now = time.time()
        batch = []
        for kind, key, data in items:
            body = json.dumps({**data, "sent_at": time.time()}).encode()
            event_id = new_id("event")
            batch.append(
                Event(
                    id=event_id,
                    tenant_id=self.tenant_id,
                    source_id="src_test",
                    idempotency_key=event_id,
                    type=kind,
                    key=key,
                    received_at=now,
                    occurred_at=None,
                    data=body,
                    raw=body,
                    headers={},
                )
            )
        await self.system.log_writer.append(batch)
        self.system.router.wake()

    async def attempts(self, endpoint_id: str) -> list[Any]:
        query = (
            sa.select(attempts.c.started_at, attempts.c.latency_ms, attempts.c.outcome)
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .where(deliveries.c.endpoint_id == endpoint_id)
            .order_by(attempts.c.started_at)
        )
        async with self.system.db.read() as conn:
            return list(await conn.execute(query))


@contextlib.asynccontextmanager
async def world(tmp_path: Path, clock: Clock = SYSTEM, **settings: Any) -> AsyncIterator[World]:
    system = Interlink(
        settings_for(tmp_path, volume_monitor=False, poll_interval_seconds=0.2, **settings),
        clock=clock,
    )
    await system.start()
    # The test reads and writes storage directly, as the operator: the system scope (the
    # pipeline, started above, has its own).
    with system_scope("test: the operator"):
        tenant, _ = await system.management.create_tenant("lanes")
    w = World(system, clock, tenant.id)
    try:
        with system_scope("test: the operator"):
            yield w
    finally:
        await system.stop()
        for r in w.receivers:
            if r.runner is not None:
                await r.runner.cleanup()


# 1. ordering ------------------------------------------------------------------------------


def flaky_and_slow(seed: int) -> Callable[[dict[str, Any]], Answer]:
    """10 % of attempts fail at random; each answer takes 40 ms, like a receiver a network
    away: what makes parallel keys worth having."""
    rng = random.Random(seed)
    return lambda _: (500 if rng.random() < 0.10 else 200, 0.04)


FAST_RETRIES = RetryPolicy(schedule=(0.05, 0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1, 1))


def order_violations(acked: list[Arrival], arrivals: list[Arrival]) -> tuple[int, int]:
    """(order violations, redeliveries of acknowledged events) per key at the receiver."""
    acked_through: dict[str, int] = defaultdict(lambda: -1)
    violations = redelivered = 0
    for a in sorted(arrivals, key=lambda a: a.at):
        key, n = a.data["key"], a.data["n"]
        if n <= acked_through[key]:
            redelivered += 1
        elif n != acked_through[key] + 1:
            violations += 1  # sent before the event ahead of it was acknowledged
        if 200 <= a.status < 300 and n == acked_through[key] + 1:
            acked_through[key] = n
    return violations, redelivered


async def throughput(w: World, kind: str, keys: int, events: int, seed: int) -> float:
    r = await w.receiver(flaky_and_slow(seed))
    await w.endpoint(
        r.url, [f"{kind}.*"], ordering=Ordering.ORDERED, concurrency=128, retry=FAST_RETRIES
    )
    per_key: dict[str, int] = defaultdict(int)
    items: list[tuple[str, str | None, dict[str, Any]]] = []
    rng = random.Random(seed)
    for _ in range(events):
        key = f"{kind}-{rng.randrange(keys)}"
        items.append((f"{kind}.updated", key, {"key": key, "n": per_key[key]}))
        per_key[key] += 1
    started = time.time()
    for i in range(0, len(items), 2000):
        await w.inject(items[i : i + 2000])
    await eventually(lambda: len(r.acked()) >= events, timeout=240)
    took = max(a.at for a in r.acked()) - started
    violations, redelivered = order_violations(r.acked(), r.arrivals)
    assert violations == 0, f"{violations} order violations over {keys} keys"
    assert redelivered == 0
    assert len({a.webhook_id for a in r.acked()}) == events  # every event, once
    return events / took


async def test_ordered_endpoint_keeps_each_keys_order_over_many_keys_and_one(
    tmp_path: Path,
) -> None:
    # Order, no redelivery and every event once, checked inside `throughput`. How much faster
    # 500 keys drain than one (the parallelism, >= 20x) is a ratio of wall-clock rates, noise
    # on a busy machine: it is measured by `python -m bench.lanes`, not asserted here.
    async with world(tmp_path) as w:
        await throughput(w, "many", keys=500, events=5_000, seed=1)
        await throughput(w, "one", keys=1, events=100, seed=2)


# 2. isolation and the breaker ----------------------------------------------------------------

HOUR = 3600.0
EVENTS = 10_000
# A steady rate well inside what the backend sustains on a 2-core machine beside its receivers
# (the all-in-one PostgreSQL process tops out near 420 events/s there, SQLite above 650): a
# latency ratio measured at saturation would measure the queue, not the isolation.
RATE = 150.0 if database_backend() == "postgres" else 420.0
SCALE = HOUR / (EVENTS / RATE)  # the traffic takes the pipeline's hour


async def healthy_latencies(tmp_path: Path, with_bad: bool) -> tuple[list[float], list[Any], World]:
    clock = ScaledClock(SCALE)
    async with world(tmp_path, clock) as w:
        healthy = [await w.receiver() for _ in range(9)]
        for i, r in enumerate(healthy):
            await w.endpoint(r.url, [f"t{i}.*"])
        bad_id = None
        if with_bad:
            start = clock.now()

            def bad(_: dict[str, Any]) -> Answer:
                # 500 for the first half hour, then no answer at all
                return (500, 0.0) if clock.now() - start < HOUR / 2 else (500, None)

            bad_r = await w.receiver(bad)
            bad_id = await w.endpoint(bad_r.url, ["*"], timeout_seconds=1.0)
        events, rate = EVENTS, RATE
        began = time.time()
        for i in range(0, events, 50):
            await w.inject([(f"t{j % 9}.created", None, {"j": j}) for j in range(i, i + 50)])
            ahead = began + (i + 50) / rate - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await eventually(lambda: sum(len(r.acked()) for r in healthy) >= events, timeout=60)
        latencies = [a.at - a.data["sent_at"] for r in healthy for a in r.acked()]
        tries = await w.attempts(bad_id) if bad_id else []
        return latencies, tries, w


async def test_a_failing_endpoint_slows_no_other_and_its_breaker_probes_once_per_interval(
    tmp_path: Path,
) -> None:
    base, _, _ = await healthy_latencies(tmp_path / "base", with_bad=False)
    mixed, tries, _ = await healthy_latencies(tmp_path / "bad", with_bad=True)
    # Every healthy event delivered beside the failing endpoint. The p99 ratio (<= 2x) is a
    # latency ratio, noise on a busy machine: measured by `python -m bench.lanes`.
    assert len(base) == len(mixed) == 10_000

    # Closed until the breaker opens: at most its 20-attempt window. It cannot open before
    # `min_attempts` outcomes, so the open point is looked for from there: on a starved machine
    # a pause of a cool-down (0.16 s of real time at this scale) can fall inside the closed phase.
    policy = BreakerPolicy()
    cool = policy.open_seconds * (1 - policy.jitter)
    starts = [t.started_at for t in tries]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    first_gap = next(i for i, g in enumerate(gaps) if i >= policy.min_attempts - 1 and g >= cool)
    before_open = first_gap + 1
    print(
        f"attempts before the breaker opened: {before_open}; probes after: {len(gaps[first_gap:])}"
    )
    assert before_open <= 20
    # Then one probe per half-open interval: never two attempts within a cool-down.
    assert all(g >= cool for g in gaps[first_gap:])
    assert 5 <= len(gaps[first_gap:]) <= 12  # 30 s doubling to 600 s over an hour: about 9


# 3. recovery at the rate limit -------------------------------------------------------------


async def test_a_recovered_endpoint_gets_its_whole_backlog_at_its_rate_with_spread_times(
    tmp_path: Path,
) -> None:
    # Slow enough a clock that the event loop's jitter (tens of ms when the machine is busy)
    # is a fraction of a token's 0.1 s; fast enough that the 30 s cool-down takes 6 s.
    clock = ScaledClock(5.0)
    async with world(tmp_path, clock) as w:
        up = asyncio.Event()
        r = await w.receiver(lambda _: (200, 0.0) if up.is_set() else (503, 0.0))
        ops = await w.receiver()
        limit = RateLimit(rate=600, per="minute", burst=10)  # 10/s of the clock: 50/s real
        ep = await w.endpoint(r.url, ["booking.*"], rate_limit=limit)
        await w.endpoint(ops.url, ["endpoint.*"])
        await w.inject([("booking.updated", None, {"j": j}) for j in range(20)])
        await eventually(lambda: len(r.arrivals) >= 20, timeout=10)
        await eventually(lambda: _breaker(w, ep, "open"), timeout=10)
        backlog = 600
        await w.inject([("booking.updated", None, {"j": j}) for j in range(20, 20 + backlog)])
        await asyncio.sleep(1.0)
        failed_before = len(r.arrivals)
        up.set()
        await eventually(lambda: len({a.webhook_id for a in r.acked()}) >= 20 + backlog, 90)
        acked = sorted(r.acked(), key=lambda a: a.clock_at)
        assert len({a.webhook_id for a in acked}) == 20 + backlog  # the backlog, in full
        # No faster than the rate limit: in any 10 s of the clock, at most 100 + the burst
        # were sent (when each attempt started, as recorded; arrival times would add the
        # loopback's jitter, magnified by the clock's scale).
        sent = [t.started_at for t in await w.attempts(ep) if t.outcome == "succeeded"]
        times = sorted(sent)
        worst = max(
            sum(1 for t in times[i : i + 200] if t - times[i] < 10.0) for i in range(len(times))
        )
        print(
            f"\nrecovery: {len(acked)} delivered after {failed_before} failed attempts;"
            f" busiest 10 s of the clock: {worst} (limit 100 + burst 10)"
        )
        # started_at is stamped as the attempt's task starts, a few ms of the event loop after
        # its token was granted (x5 on this clock): a little slack on the bucket's exact 110.
        assert worst <= 113
        # Spread, not synchronized: no second of the clock carries more than its 10 tokens and
        # the burst (the release's spread times are checked in test_storage_ports).
        busiest_second = max(
            sum(1 for t in times[i : i + 40] if t - times[i] < 1.0) for i in range(len(times))
        )
        assert busiest_second <= 10 + 10 + 3
        # And the operators heard of it.
        await eventually(
            lambda: any(a.data.get("endpoint_id") == ep for a in ops.acked()), timeout=10
        )
        recovered = [a for a in ops.acked() if a.data.get("endpoint_id") == ep]
        assert recovered and recovered[0].data.get("failing_for_seconds") is not None


async def _breaker(w: World, endpoint_id: str, state: str) -> bool:
    lane = await w.system.management.endpoint_lane(w.tenant_id, endpoint_id)
    return lane.breaker.state.value == state


# 4. disabled endpoints keep their deliveries -------------------------------------------------


async def test_deliveries_for_a_disabled_endpoint_are_kept_and_flow_when_it_is_enabled(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        gone_once = asyncio.Event()

        def answer(_: dict[str, Any]) -> Answer:
            if not gone_once.is_set():
                gone_once.set()
                return 410, 0.0
            return 200, 0.0

        r = await w.receiver(answer)
        ops = await w.receiver()
        ep = await w.endpoint(r.url, ["booking.*"])
        await w.endpoint(ops.url, ["endpoint.*"])
        await w.inject([("booking.created", None, {"j": 0})])
        m = w.system.management

        async def disabled() -> bool:
            e = await m.get_endpoint(w.tenant_id, ep)
            return e is not None and e.status is EndpointStatus.DISABLED

        await eventually(disabled, timeout=10)  # 410 Gone disabled it
        await eventually(lambda: len(ops.acked()) == 1, timeout=10)
        (notice,) = ops.acked()
        assert notice.data == {
            "endpoint_id": ep,
            "reason": "gone",
            "detail": "the receiver answered 410 Gone",
        }

        await w.inject([("booking.created", None, {"j": j}) for j in range(1, 501)])
        await asyncio.sleep(1.5)
        assert len(r.arrivals) == 1  # nothing is sent to a disabled endpoint
        counts = (await w.system.deliveries.counts())[ep]
        assert counts.get("pending", 0) == 500  # ... and nothing is dropped

        await m.update_endpoint(w.tenant_id, ep, {"status": "active"})
        await eventually(lambda: len(r.acked()) == 500, timeout=20)
        assert sorted(a.data["j"] for a in r.acked()) == list(range(1, 501))


# 6. slow and hostile receivers --------------------------------------------------------------


async def drain_rate(tmp_path: Path, with_slow: bool) -> tuple[float, list[Any]]:
    async with world(tmp_path) as w:
        healthy = [await w.receiver() for _ in range(3)]
        for r in healthy:
            await w.endpoint(r.url, ["booking.*"])
        slow_id = None
        if with_slow:
            slow = await w.receiver(lambda _: (200, None))  # accepts, then never answers
            slow_id = await w.endpoint(slow.url, ["booking.*"], timeout_seconds=2.0)
        events = 4_000
        started = time.time()
        for i in range(0, events, 500):
            await w.inject([("booking.created", None, {"j": j}) for j in range(i, i + 500)])
        await eventually(lambda: all(len(r.acked()) >= events for r in healthy), timeout=60)
        took = max(a.at for r in healthy for a in r.acked()) - started
        if slow_id is not None:
            await asyncio.sleep(2.5)  # the first attempts reach their timeout
        return 3 * events / took, (await w.attempts(slow_id)) if slow_id else []


async def test_a_receiver_that_never_answers_costs_its_own_slots_until_the_timeout(
    tmp_path: Path,
) -> None:
    alone, _ = await drain_rate(tmp_path / "alone", with_slow=False)
    beside, tries = await drain_rate(tmp_path / "beside", with_slow=True)
    # Every healthy event was delivered (drain_rate waits for it). The rate beside the silent
    # receiver against alone (>= 0.9) is a ratio of wall-clock rates: `python -m bench.lanes`.
    assert alone > 0 and beside > 0
    ended = [t for t in tries if t.outcome == "error"]
    assert ended, "the silent receiver's attempts end"
    # Its 2 s timeout fired: never early, and within 3x (a busy machine delays, never hastens).
    assert all(1000 <= t.latency_ms <= 6000 for t in ended)


# the ordered rule's dead head --------------------------------------------------------------


async def test_a_dead_head_blocks_only_its_key_or_is_skipped(tmp_path: Path) -> None:
    async with world(tmp_path) as w:

        def poison(data: dict[str, Any]) -> Answer:
            return (500, 0.0) if data["n"] == 0 and data["key"].startswith("bad") else (200, 0.0)

        waits, skips = await w.receiver(poison), await w.receiver(poison)
        once = RetryPolicy(schedule=(0.05,))
        await w.endpoint(waits.url, ["wait.*"], ordering=Ordering.ORDERED, retry=once)
        await w.endpoint(
            skips.url,
            ["skip.*"],
            ordering=Ordering.ORDERED,
            on_head_dead=OnHeadDead.SKIP,
            retry=once,
        )
        for kind in ("wait", "skip"):
            await w.inject(
                [
                    (f"{kind}.x", key, {"key": key, "n": n})
                    for n in range(3)
                    for key in ("bad-1", "good-1")
                ]
            )
        await eventually(lambda: len(waits.acked()) >= 3 and len(skips.acked()) >= 5, 10)
        await asyncio.sleep(0.5)
        got = {(a.data["key"], a.data["n"]) for a in waits.acked()}
        assert got == {("good-1", 0), ("good-1", 1), ("good-1", 2)}  # bad-1 waits on its head
        got = {(a.data["key"], a.data["n"]) for a in skips.acked()}
        assert got == {("good-1", n) for n in range(3)} | {("bad-1", 1), ("bad-1", 2)}


# health: disabled after failing too long ------------------------------------------------------


async def test_an_endpoint_failing_longer_than_its_limit_is_disabled_and_operators_told(
    tmp_path: Path,
) -> None:
    clock = ScaledClock(600.0)  # its hour of failing in 6 s
    async with world(tmp_path, clock) as w:
        r = await w.receiver(lambda _: (500, 0.0))
        ops = await w.receiver()
        ep = await w.endpoint(r.url, ["booking.*"], disable_after_seconds=3600.0)
        await w.endpoint(ops.url, ["endpoint.*"])
        await w.inject([("booking.created", None, {"j": j}) for j in range(50)])

        async def disabled() -> bool:
            e = await w.system.management.get_endpoint(w.tenant_id, ep)
            return e is not None and e.status is EndpointStatus.DISABLED

        await eventually(disabled, timeout=30)
        e = await w.system.management.get_endpoint(w.tenant_id, ep)
        assert e is not None and "disable_after_seconds" in (e.disabled_reason or "")
        await eventually(lambda: len(ops.acked()) == 1, timeout=10)
        assert ops.acked()[0].data["reason"] == "failing"
        lane = await w.system.management.endpoint_lane(w.tenant_id, ep)
        assert lane.failing_since is not None
        # Disabled after its hour, not before; its deliveries are kept, none lost.
        assert clock.now() - lane.failing_since >= 3600
        counts = (await w.system.deliveries.counts())[ep]
        assert sum(counts.values()) == 50 and counts.get("succeeded", 0) == 0
