"""Issue 11, part 1, end to end: ``interlink up`` SIGKILLed ten times under load, restarted at
once each time, must still deliver every acknowledged event to every endpoint within a minute
of the last restart — no lane left stalled by the crashes.

On SQLite (the embedded default) and on PostgreSQL (``INTERLINK_TEST_POSTGRES_URL``; skipped
without it). On PostgreSQL nothing releases a killed process's leases at start-up (others may
share the database): they lapse, here after 3 s as in the scale-out tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.canary import Sweep

from .conftest import _PROCESSES, Api, InterlinkProcess, Receivers, free_port
from .test_ingest_to_delivery import (
    UNREACHABLE,
    no_forgeries,
    order_message,
    setup_fanout,
    wait_until_delivered,
)
from .test_scale_out import postgres_env

pytestmark = pytest.mark.e2e

KILLS = 10
WORKERS = 16
BOUND = 60.0  # seconds after the last restart for every acknowledged event to arrive


@pytest.fixture(params=["sqlite", "postgres"])
async def process(
    request: pytest.FixtureRequest, tmp_path: Path, canary: Sweep
) -> AsyncIterator[InterlinkProcess]:
    env = {}
    if request.param == "postgres":
        env = postgres_env(request.getfixturevalue("postgres_database"))
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    p = InterlinkProcess(workdir, free_port(), env)
    request.node.stash.setdefault(_PROCESSES, []).append(p)
    try:
        await p.start()
        yield p
    finally:
        code = await asyncio.to_thread(p.stop)
        for log in p.logs:
            canary.read_log_file(log)
        assert code in (None, 0), f"interlink exited with {code} on SIGTERM:\n{p.output()}"


async def test_ten_sigkills_under_load_leave_no_endpoint_stalled(
    process: InterlinkProcess, receivers: Receivers, http: aiohttp.ClientSession, canary: Sweep
) -> None:
    started = time.monotonic()
    api = Api(http, process, canary)
    tenant, source, targets = await setup_fanout(api, receivers)
    acknowledged: dict[int, str] = {}  # message number -> event id
    sends = 0
    stop = asyncio.Event()
    rng = random.Random(11)

    async def load(worker: int) -> None:
        nonlocal sends
        n = worker
        while not stop.is_set():
            # One send in ten repeats an acknowledged message: the partner's retry, deduped.
            again = acknowledged and rng.random() < 0.1
            number = rng.choice(list(acknowledged)) if again else n
            message = order_message(number)
            try:
                reply = await api.ingest(source, message.webhook_id, message.body)
            except UNREACHABLE:
                await asyncio.sleep(0.05)  # down: not acknowledged, sent again
                continue
            sends += 1
            if reply.status != 202:
                assert reply.status == 503, reply  # starting or stopping, never a 500
                await asyncio.sleep(0.05)
                continue
            previous = acknowledged.setdefault(number, reply.body["id"])
            assert previous == reply.body["id"], f"message {number} acknowledged twice"
            if not again:
                n += WORKERS

    async def killer() -> float:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            process.sigkill()
            process.spawn()  # back at once, on the same database
            await process.wait_healthy()
        return time.monotonic()

    workers = [asyncio.create_task(load(w)) for w in range(WORKERS)]
    try:
        last_restart = await killer()
        await asyncio.sleep(1.0)  # load goes on after the last restart too
    finally:
        stop.set()
        await asyncio.gather(*workers)
    event_ids = set(acknowledged.values())
    assert len(event_ids) == len(acknowledged), "two messages acknowledged with one event id"

    left = BOUND - (time.monotonic() - last_restart)
    await wait_until_delivered(api, tenant, event_ids, targets, timeout=left)
    delivered_after = time.monotonic() - last_restart
    no_forgeries(targets)
    for receiver in targets:
        assert event_ids <= receiver.counts.keys()
    healths = [
        await api.ok("GET", f"/api/v1/endpoints/{e['id']}/health", key=tenant.key)
        for e in await api.list_all("/api/v1/endpoints", tenant.key)
    ]
    for health in healths:
        assert health["slots_in_use"] == 0 and health["deferred"] == 0, health
    print(
        f"\n{KILLS} SIGKILLs under load: {len(event_ids)} events acknowledged ({sends} sends),"
        f" all delivered to both endpoints {delivered_after:.1f} s after the last restart;"
        f" duplicates {[r.duplicates for r in targets]};"
        f" the test took {time.monotonic() - started:.0f} s"
    )
