"""Scale-out on PostgreSQL, as processes: roles in separate processes sharing the work, one
dispatcher SIGKILLed every 2 s, and the database itself crashing under load.

Needs INTERLINK_TEST_POSTGRES_URL (a fresh database per test); skipped without it, a failure
under CI=true.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from tests.canary import Sweep
from tests.conftest import app_url
from tests.e2e.conftest import (
    _PROCESSES,
    Api,
    InterlinkProcess,
    Receivers,
    Reply,
    free_port,
    wait_for,
)
from tests.e2e.test_ingest_to_delivery import (
    Message,
    no_forgeries,
    order_message,
    send_webhooks,
    wait_until_delivered,
)
from tests.integration.streams_support import Received, sse, ws

from interlink.storage.secrets_box import SecretBox

REPO = Path(__file__).resolve().parents[2]
# Every process of a deployment holds the same secrets key; PostgreSQL has no default one.
SECRETS_KEY = SecretBox.new_key()


def postgres_env(url: str, **extra: str) -> dict[str, str]:
    """As in production: the owner migrates, the application role serves (row-level security)."""
    return {
        "INTERLINK_DATABASE_URL": app_url(url),
        "INTERLINK_MIGRATION_DATABASE_URL": url,
        "INTERLINK_SECRETS_KEY": SECRETS_KEY,
        # A killed dispatcher's leases lapse in seconds, not the default two minutes.
        "INTERLINK_DELIVERY_LEASE_SECONDS": "3",
        "INTERLINK_DELIVERY_CONCURRENCY": "64",
        "INTERLINK_VOLUME_MONITOR": "false",
        **extra,
    }


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: str
) -> AsyncIterator[Callable[[str, tuple[str, ...]], InterlinkProcess]]:
    started: list[InterlinkProcess] = []

    def process(name: str, roles: tuple[str, ...]) -> InterlinkProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        args = ("run", *(a for r in roles for a in ("--role", r)))
        p = InterlinkProcess(workdir, free_port(), postgres_env(postgres_database), args)
        request.node.stash.setdefault(_PROCESSES, []).append(p)
        started.append(p)
        return p

    try:
        yield process
    finally:
        for p in started:
            await asyncio.to_thread(p.stop)


async def test_three_dispatchers_two_routers_one_killed_every_two_seconds(
    cluster: Callable[[str, tuple[str, ...]], InterlinkProcess],
    receivers: Receivers,
    http: aiohttp.ClientSession,
    canary: Sweep,
) -> None:
    front = cluster("front", ("ingress", "api"))
    await front.start()  # migrates the database, before the others start
    others = [cluster(f"router{i}", ("router",)) for i in (1, 2)]
    dispatchers = [cluster(f"dispatcher{i}", ("dispatcher",)) for i in (1, 2, 3)]
    await asyncio.gather(*(p.start() for p in others + dispatchers))

    api = Api(http, front, canary)
    tenant = await api.tenant("acme")
    source = await api.source(tenant, "shop")
    targets = [await receivers.start(name) for name in ("a", "b", "c")]
    for receiver in targets:
        receiver.delay = 0.01  # deliveries are always in flight when a dispatcher dies
        await api.endpoint(tenant, receiver, subscribe=["*"])

    messages = [order_message(n) for n in range(10_000)]
    acknowledged: dict[str, str] = {}
    kills = 0
    sending = asyncio.Event()

    def ack(message: Message, reply: Reply) -> None:
        acknowledged[message.key] = reply.body["id"]

    async def killer() -> None:
        nonlocal kills
        rng = random.Random(7)
        while kills < 10 or sending.is_set():
            await asyncio.sleep(2.0)
            victim = rng.choice(dispatchers)
            victim.sigkill()
            kills += 1
            victim.spawn()  # back at once; its leases are someone else's once they lapse
        for p in dispatchers:
            await p.wait_healthy()

    sending.set()
    killing = asyncio.create_task(killer())
    started = time.monotonic()
    try:
        replies, _ = await send_webhooks(api, source, messages, on_ack=ack, concurrency=16)
    finally:
        sending.clear()
    ingest_seconds = time.monotonic() - started
    await asyncio.wait_for(killing, timeout=60)

    bad = [(r.status, str(r.body)[:200]) for r in replies.values() if r.status != 202]
    assert not bad, bad[:5]
    event_ids = set(acknowledged.values())
    assert len(event_ids) == 10_000
    await wait_until_delivered(api, tenant, event_ids, targets, timeout=240)
    no_forgeries(targets)

    duplicates = 0
    for receiver in targets:
        assert event_ids <= receiver.counts.keys()  # zero acknowledged events lost
        duplicates += receiver.duplicates
        # Every duplicate carries the webhook-id of its first delivery: one id per message.
        ids_by_message: dict[int, set[str]] = defaultdict(set)
        for webhook_id, payload in receiver.bodies.items():
            ids_by_message[payload["data"]["n"]].add(webhook_id)
        assert all(len(ids) == 1 for ids in ids_by_message.values())
    in_flight_bound = kills * 64  # INTERLINK_DELIVERY_CONCURRENCY per dispatcher
    print(
        f"\nscale-out: 10,000 events x 3 endpoints through 2 routers and 3 dispatchers,"
        f" {ingest_seconds:.1f} s of ingest, {kills} dispatcher SIGKILLs:"
        f" 0 lost, {duplicates} duplicate deliveries (bound {in_flight_bound})"
    )
    assert kills >= 10
    assert duplicates <= in_flight_bound


@pytest.mark.exclusive  # it kills the PostgreSQL every other test on the machine is using
async def test_postgres_crashing_under_load_gives_503_then_recovers_losing_nothing(
    cluster: Callable[[str, tuple[str, ...]], InterlinkProcess],
    receivers: Receivers,
    http: aiohttp.ClientSession,
    canary: Sweep,
) -> None:
    one = cluster("all", ("all",))
    await one.start()
    api = Api(http, one, canary)
    tenant = await api.tenant("acme")
    source = await api.source(tenant, "shop")
    receiver = await receivers.start("a")
    await api.endpoint(tenant, receiver, subscribe=["*"])

    statuses: dict[int, int] = defaultdict(int)
    acknowledged: set[str] = set()
    down_at: list[float] = []
    up_again: list[float] = []
    stop = asyncio.Event()

    async def load(worker: int) -> None:
        n = worker
        while not stop.is_set():
            message = order_message(n)
            try:
                reply = await api.ingest(source, message.webhook_id, message.body)
            except (aiohttp.ClientError, OSError, TimeoutError):
                statuses[-1] += 1
                await asyncio.sleep(0.05)
                continue
            statuses[reply.status] += 1
            if reply.status == 202:
                acknowledged.add(reply.body["id"])
                if down_at and not up_again:
                    up_again.append(time.monotonic())
                n += 8
            else:
                assert reply.status == 503, reply  # never a 500
                assert "unavailable" in reply.problem_detail()
                await asyncio.sleep(0.05)

    workers = [asyncio.create_task(load(w)) for w in range(8)]
    try:
        await asyncio.sleep(3)
        await asyncio.to_thread(_postgres, "kill")
        down_at.append(time.monotonic())
        await asyncio.sleep(4)  # down: every request in these seconds must be a 503
        await asyncio.to_thread(_postgres, "start")
        await wait_for(lambda: bool(up_again), timeout=30, what="ingest to recover on its own")
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    recovered_in = up_again[0] - down_at[0]
    print(
        f"\npostgres crash: answers {dict(statuses)}; 202 again {recovered_in:.1f} s after the"
        f" crash (down 4 s); {len(acknowledged)} acknowledged"
    )
    assert statuses[503] > 0
    assert recovered_in <= 4 + 30
    await wait_until_delivered(api, tenant, acknowledged, [receiver], timeout=60)
    assert acknowledged <= receiver.counts.keys()  # nothing acknowledged was lost


def _postgres(command: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts/postgres.sh"), command], check=True)


async def test_streams_on_two_api_processes_carry_every_event_a_third_ingests(
    cluster: Callable[[str, tuple[str, ...]], InterlinkProcess],
    http: aiohttp.ClientSession,
    canary: Sweep,
) -> None:
    """Two `api` processes and the ingest in a third: SSE and WebSocket clients of either see
    every event, once, in log order (each api process's hub is woken by NOTIFY and reads the
    database; it appends nothing itself)."""
    front = cluster("ingest", ("ingress", "router", "dispatcher", "scheduler"))
    await front.start()
    apis = [cluster(f"api{i}", ("api",)) for i in (1, 2)]
    await asyncio.gather(*(p.start() for p in apis))
    management = Api(http, apis[0], canary)
    tenant = await management.tenant("acme")
    source = await management.source(tenant, "shop")
    auth = {"Authorization": f"Bearer {tenant.key}"}
    total = 300
    plan = [(apis[0], sse), (apis[0], ws), (apis[1], sse), (apis[1], ws)]
    received = [Received() for _ in plan]
    reading = [
        asyncio.create_task(read(p.base_url, got, headers=auth, until=total))
        for (p, read), got in zip(plan, received, strict=True)
    ]
    for p in apis:
        await wait_for(lambda p=p: _streams_open(http, p), timeout=20, what="its 2 streams open")
    messages = [order_message(n) for n in range(total)]
    ingest = Api(http, front, canary)
    replies, _ = await send_webhooks(ingest, source, messages, concurrency=8)
    assert all(r.status == 202 for r in replies.values())
    await asyncio.wait_for(asyncio.gather(*reading), 60)
    ids = {r.body["id"] for r in replies.values()}
    for got in received:
        assert {e["id"] for e in got.events} == ids
        assert got.positions == sorted(set(got.positions))  # in log order, each once


async def _streams_open(http: aiohttp.ClientSession, p: InterlinkProcess) -> bool:
    """Whether ``p`` has both its streams open (its interlink_stream_connections)."""
    async with http.get(f"{p.base_url}/metrics") as r:
        text = await r.text()
    open_ = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("interlink_stream_connections{")
    )
    return open_ == 2
