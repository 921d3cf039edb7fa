"""Pull consumers end to end (acceptance 2): ``interlink up`` (SQLite and PostgreSQL), three
consumer processes of the SDK (``interlink-consume pull_consumer:app``, tests/e2e/pull_consumer.py)
on one ordered pull endpoint, events published over many keys with the batch API while the
consumers run, handlers failing 10 % at random (a nack), and one consumer SIGKILLed every 2 s and
started again, until every event is handled.

What must hold: every event is handled; per key, events are handled in publish order (a key's
next event is never handled before the one before it); an event is handled twice only when the
process that first handled it was killed before its ack, and then under the same delivery id;
nothing is dead.

The regular run is 3,000 events over 300 keys on SQLite (1,200 on PostgreSQL) with at least 5
kills; the acceptance's full size:

    INTERLINK_PULL_E2E_EVENTS=20000 INTERLINK_PULL_E2E_KEYS=500 INTERLINK_PULL_E2E_KILLS=10 \
      pytest tests/e2e/test_pull_consumers.py -k three_consumers
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.canary import Sweep
from tests.readme import run_readme_block

from . import test_sigkill_under_load
from .conftest import Api, InterlinkProcess, wait_for

pytestmark = pytest.mark.e2e

process = test_sigkill_under_load.process  # the fixture: interlink up on SQLite and PostgreSQL

HERE = Path(__file__).parent
_size = os.environ.get
KEYS = int(_size("INTERLINK_PULL_E2E_KEYS", "300"))
EVENTS = {
    "sqlite": int(_size("INTERLINK_PULL_E2E_EVENTS", "3000")),
    "postgres": int(_size("INTERLINK_PULL_E2E_EVENTS", "1200")),
}
MIN_KILLS = int(_size("INTERLINK_PULL_E2E_KILLS", "5"))
PUBLISHING_SECONDS = 12  # a batch a second (longer past 12,000), so kills fall while events arrive
KILL_EVERY = 2.0
RETRIES = [0, 0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # 10 tries: a 10 % handler never dies


def work(total: int) -> list[dict[str, Any]]:
    rng = random.Random(13)
    counts: Counter[str] = Counter()
    events = []
    for _ in range(total):
        key = f"k{rng.randrange(KEYS):03d}"
        events.append({"type": "booking.changed", "key": key, "data": {"n": counts[key]}})
        counts[key] += 1
    return events


class Consumers:
    def __init__(self, workdir: Path, args: list[str]) -> None:
        self.workdir = workdir
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.started = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        out = self.workdir / f"consumer-{self.started}.jsonl"
        log = open(self.workdir / f"consumer-{self.started}.log", "wb")  # noqa: SIM115
        base_url, key, endpoint = self.args
        env = os.environ | {
            "INTERLINK_API_URL": base_url,
            "INTERLINK_API_KEY": key,
            "INTERLINK_ENDPOINT_ID": endpoint,
            "CONSUMER_OUT": str(out),
            "CONSUMER_SEED": str(self.started),
        }
        cli = [sys.executable, "-m", "interlink_client.consumer.cli", "pull_consumer:app"]
        proc = subprocess.Popen(
            cli, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill_one(self, rng: random.Random) -> None:
        live = [p for p in self.procs if p.poll() is None]
        victim = rng.choice(live)
        victim.kill()
        victim.wait(10)
        self.killed.add(victim.pid)
        self.procs.remove(victim)
        self.spawn()

    def records(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted(self.workdir.glob("consumer-*.jsonl")):
            for text in path.read_text().splitlines():
                if text.endswith("}"):  # a line cut by a SIGKILL is no handling
                    lines.append(json.loads(text))
        return lines

    def stop(self) -> str:
        for p in self.procs:
            p.kill()
            p.wait(10)
        return "\n".join(
            log.read_text(errors="replace")[-2000:]
            for log in sorted(self.workdir.glob("consumer-*.log"))
        )


# The full size runs past the suite's 10 minutes per test (PostgreSQL: about 12).
@pytest.mark.timeout(int(300 + max(EVENTS.values()) / 10))
async def test_three_consumers_one_killed_every_2s_handle_every_event_in_key_order(
    http: aiohttp.ClientSession,
    process: InterlinkProcess,
    canary: Sweep,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    interlink, api = process, Api(http, process, canary)
    total = EVENTS[request.node.callspec.params["process"]]
    batch = min(1000, total // PUBLISHING_SECONDS)  # the batch API takes 1,000 at most
    started = time.monotonic()
    tenant = await api.tenant("consumer")
    body = await api.ok(
        "POST",
        "/api/v1/endpoints",
        key=tenant.key,
        json={"kind": "pull", "ordering": "ordered", "concurrency": 300, "retry_schedule": RETRIES},
        expect=201,
    )
    endpoint = body["endpoint"]["id"]
    await api.ok(
        "POST",
        "/api/v1/subscriptions",
        key=tenant.key,
        json={"endpoint_id": endpoint, "event_types": ["booking.*"]},
        expect=201,
    )
    events = work(total)
    workdir = tmp_path / "consumers"
    workdir.mkdir()
    consumers = Consumers(workdir, [interlink.base_url, tenant.key, endpoint])
    for _ in range(3):
        consumers.spawn()
    published: list[str] = []
    rng = random.Random(7)
    kills = 0
    try:
        for i in range(0, total, batch):
            reply = await api.ok(
                "POST",
                "/api/v1/events/batch",
                key=tenant.key,
                json={"events": events[i : i + batch]},
                expect=202,
            )
            published += [e["id"] for e in reply["data"]]
            await asyncio.sleep(1.0)
            if i // batch % 2 == 1:
                consumers.kill_one(rng)
                kills += 1
        last_kill = time.monotonic()

        def handled() -> int:
            return len({r["event"] for r in consumers.records() if "event" in r})

        async def done() -> bool:
            # One consumer killed every KILL_EVERY seconds until every event is handled.
            nonlocal kills, last_kill
            if handled() == total and kills >= MIN_KILLS:
                return True
            if time.monotonic() - last_kill >= KILL_EVERY:
                consumers.kill_one(rng)
                kills += 1
                last_kill = time.monotonic()
            return False

        await wait_for(
            done,
            timeout=60 + total / 20,
            interval=0.2,
            what="every event handled",
            progress=lambda: f"{handled()} of {total} handled, {kills} kills",
        )
    finally:
        output = consumers.stop()
    records = consumers.records()
    handlings = [r for r in records if "event" in r]
    lost = [r for r in records if "lost" in r]
    elapsed = time.monotonic() - started

    # Every event, and only the published ones.
    assert {r["event"] for r in handlings} == set(published), output
    # Per key, in publish order: each handling is of the key's next event or a repeat of the
    # last one (a repeat only after a kill, below).
    violations = 0
    last: dict[str, int] = {}
    for r in sorted(handlings, key=lambda r: r["at"]):
        before = last.get(r["key"], -1)
        if r["n"] not in (before, before + 1):
            violations += 1
        last[r["key"]] = max(before, r["n"])
    assert violations == 0
    # Duplicates: the same delivery again, first handled by a process that was killed.
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(handlings, key=lambda r: r["at"]):
        by_event.setdefault(r["event"], []).append(r)
    duplicates = {e: rs for e, rs in by_event.items() if len(rs) > 1}
    for rs in duplicates.values():
        assert len({r["delivery"] for r in rs}) == 1
        assert all(r["pid"] in consumers.killed for r in rs[:-1]), rs
    assert not [r for r in lost if r["pid"] not in consumers.killed]
    nacked = sum(1 for rs in by_event.values() for r in rs[:1] if r["attempt"] > 1)
    print(
        f"{total} events over {KEYS} keys, 3 consumers, {kills} SIGKILLs: all handled in"
        f" {elapsed:.1f} s, 0 order violations, {len(duplicates)} duplicates (after kills),"
        f" {nacked} handled after a nack or lapsed lease"
    )
    assert kills >= MIN_KILLS
    dead = await api.deliveries(tenant, status="dead")
    assert dead == []


async def test_a_long_poll_answers_at_shutdown_instead_of_holding_it_up(
    api: Api, interlink: InterlinkProcess
) -> None:
    tenant = await api.tenant("waiter")
    body = await api.ok(
        "POST", "/api/v1/endpoints", key=tenant.key, json={"kind": "pull"}, expect=201
    )
    path = f"/api/v1/endpoints/{body['endpoint']['id']}/claims"
    polls = [
        asyncio.create_task(api.request("POST", path, key=tenant.key, json={"wait_seconds": 30}))
        for _ in range(5)
    ]
    await asyncio.sleep(1.0)
    assert not any(p.done() for p in polls)
    stopping = time.monotonic()
    code = await asyncio.to_thread(interlink.stop)  # SIGTERM
    took = time.monotonic() - stopping
    replies = await asyncio.wait_for(asyncio.gather(*polls), 5)
    print(f"SIGTERM with 5 long polls waiting: exited {code} in {took:.2f} s")
    assert code == 0 and took < 5  # the shutdown deadline is 10 s; a poll could wait 30
    assert [(r.status, r.body["data"]) for r in replies] == [(200, [])] * 5


async def test_the_readme_pull_block_runs_as_written(
    api: Api, interlink: InterlinkProcess, tmp_path: Path
) -> None:
    tenant = await api.tenant("readme")
    answers, _ = await asyncio.to_thread(
        run_readme_block, "pull", tmp_path, interlink.base_url, tenant.key
    )
    claims, acked = answers
    (claimed,) = claims["data"]
    assert claimed["type"] == "booking.confirmed" and claimed["key"] == "b-9"
    assert acked["status"] == "succeeded" and acked["id"] == claimed["delivery_id"]
