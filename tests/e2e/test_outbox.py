"""The transactional outbox end to end (acceptance 3): an application process commits
``COMMITS`` transactions that each write a business row and publish one event through the
outbox, and rolls back ``ROLLBACKS`` more, while ``interlink-outbox relay`` processes ship the
outbox to ``interlink up`` and are SIGKILLed 0.3 to 1 s after each start (at least ``KILLS`` times).

What must hold: every committed event is stored in Interlink exactly once (one event per
``outbox-<row id>``), none of the rolled-back ones, and an ordered push endpoint receives each
key's events in commit order (each key's versions 1, 2, 3, … with no gap). On PostgreSQL two
relays run at once; on SQLite one (the supported setup there).

The CI run is 2,000 + 400 transactions over about 25 s; the full run of the acceptance:

    INTERLINK_OUTBOX_E2E_COMMITS=10000 INTERLINK_OUTBOX_E2E_ROLLBACKS=2000 \
    INTERLINK_OUTBOX_E2E_SECONDS=60 pytest tests/e2e/test_outbox.py
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlink_client.outbox import create_table, outbox
from interlink_client.outbox.relay import engine_for

from .conftest import Api, InterlinkProcess, Receivers, wait_for

pytestmark = pytest.mark.e2e

COMMITS = int(os.environ.get("INTERLINK_OUTBOX_E2E_COMMITS", "2000"))
ROLLBACKS = int(os.environ.get("INTERLINK_OUTBOX_E2E_ROLLBACKS", "400"))
KILLS = int(os.environ.get("INTERLINK_OUTBOX_E2E_KILLS", "20"))
SECONDS = float(os.environ.get("INTERLINK_OUTBOX_E2E_SECONDS", "25"))
KEYS = 50
RELAY = Path(sys.executable).parent / "interlink-outbox"
APP = Path(__file__).with_name("outbox_app.py")
SHIPPED_AGAIN = re.compile(r"\((\d+) already in Interlink")


@dataclass
class Backend:
    url: str
    relays: int  # relay processes at once
    workers: int  # the application's concurrent transactions


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(f"sqlite:///{tmp_path}/service.db", relays=1, workers=1)
    return Backend(request.getfixturevalue("postgres_database"), relays=2, workers=4)


@pytest.fixture
async def service_db(backend: Backend) -> AsyncIterator[AsyncEngine]:
    """The service's own database: its outbox, accounts (one version counter per key) and
    bookings (one row per committed transaction)."""
    engine = engine_for(backend.url)
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(create_table)
        await conn.exec_driver_sql("CREATE TABLE accounts (key TEXT PRIMARY KEY, version INT)")
        await conn.exec_driver_sql(
            "CREATE TABLE bookings (txn INT PRIMARY KEY, key TEXT, version INT)"
        )
        for k in range(KEYS):
            await conn.exec_driver_sql(f"INSERT INTO accounts VALUES ('k{k}', 0)")
    yield engine
    await engine.dispose()


class Relays:
    """``interlink-outbox relay`` processes, each slot SIGKILLed and restarted at will."""

    def __init__(self, workdir: Path, count: int, argv: list[str], env: dict[str, str]) -> None:
        self.workdir, self.argv, self.env = workdir, argv, env
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.logs: list[Path] = []
        self.last: dict[int, Path] = {}

    def start(self, slot: int) -> None:
        log = self.workdir / f"relay-{slot}-{len(self.logs)}.log"
        self.logs.append(log)
        self.last[slot] = log
        with open(log, "wb") as out:
            self.procs[slot] = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def running(self, slot: int) -> None:
        """Waits until the slot's relay has started its loop (it imports for a while first)."""
        log = self.last[slot]
        await wait_for(
            lambda: "outbox relay running" in log.read_text(errors="replace"),
            timeout=30,
            interval=0.02,
            what=f"relay {slot} to start",
        )

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        assert proc is not None and proc.poll() is None, self.output()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> list[int | None]:
        codes = []
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            codes.append(None if proc is None else proc.returncode)
        return codes

    def shipped_again(self) -> int:
        """Rows a relay shipped that Interlink already had: the kills that landed mid-batch."""
        return sum(
            int(n)
            for log in self.logs
            for n in SHIPPED_AGAIN.findall(log.read_text(errors="replace"))
        )

    def output(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs[-4:]
        )


async def _unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def test_every_committed_event_arrives_once_in_order_through_relay_kills(
    api: Api,
    interlink: InterlinkProcess,
    receivers: Receivers,
    backend: Backend,
    service_db: AsyncEngine,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    tenant = await api.tenant("outbox")
    receiver = await receivers.start("orders")
    await api.endpoint(
        tenant, receiver, subscribe=["order.*"], ordering="ordered", concurrency=KEYS
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
    env |= {"INTERLINK_API_KEY": tenant.key, "PYTHONUNBUFFERED": "1"}
    argv = [str(RELAY), "relay", "--database", backend.url, "--api-url", interlink.base_url]
    relays = Relays(tmp_path, backend.relays, argv, env)
    for slot in range(backend.relays):
        relays.start(slot)
    for slot in range(backend.relays):
        await relays.running(slot)
    app = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        "--database",
        backend.url,
        "--commits",
        str(COMMITS),
        "--rollbacks",
        str(ROLLBACKS),
        "--keys",
        str(KEYS),
        "--workers",
        str(backend.workers),
        "--seconds",
        str(SECONDS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    app_output = asyncio.create_task(app.communicate())

    kills = 0
    rng = random.Random(7)
    try:
        while not app_output.done() or kills < KILLS:
            # With two relays, each is killed in turn, half as often: the pace of kills stays.
            await asyncio.sleep(rng.uniform(0.3, 1.0) / backend.relays)
            slot = kills % backend.relays
            relays.kill(slot)
            relays.start(slot)
            kills += 1
            await relays.running(slot)  # a kill during start-up would test nothing
        out, _ = await app_output
        assert app.returncode == 0, out.decode()
        app_seconds = time.monotonic() - started

        deadline = time.monotonic() + 90
        while await _unsent(service_db):
            assert time.monotonic() < deadline, f"rows left unsent:\n{relays.output()}"
            await asyncio.sleep(0.2)
    finally:
        codes = relays.stop()
    assert all(c == 0 for c in codes), f"relays exited with {codes} on SIGTERM:\n{relays.output()}"

    async with service_db.connect() as conn:
        committed = {
            r.txn: (r.key, r.version)
            for r in await conn.execute(sa.text("SELECT txn, key, version FROM bookings"))
        }
        rows = (await conn.execute(sa.select(outbox.c.id, outbox.c.failed_at))).all()
    assert len(committed) == COMMITS
    assert len(rows) == COMMITS and not [r for r in rows if r.failed_at is not None]

    # Exactly once in Interlink: one event per committed row, under the row's id.
    stored = await api.events(tenant, type="order.placed")
    assert sorted(e["idempotency_key"] for e in stored) == sorted(f"outbox-{r.id}" for r in rows)
    assert {e["data"]["txn"] for e in stored} == set(committed)  # none rolled back
    assert not [e for e in stored if e["data"]["rolled_back"]]

    # Downstream, an ordered endpoint gets each key's versions 1, 2, 3, … in order.
    await wait_for(
        lambda: len(receiver.counts) >= COMMITS,
        timeout=90,
        what="every event at the receiver",
        progress=lambda: f"{len(receiver.counts)} of {COMMITS}",
    )
    seen: set[str] = set()
    versions: dict[str, list[int]] = defaultdict(list)
    for webhook_id, _status in receiver.answered:
        if webhook_id not in seen:
            seen.add(webhook_id)
            data = receiver.bodies[webhook_id]["data"]
            versions[data["key"]].append(data["version"])
    expected: dict[str, int] = defaultdict(int)
    for key, _version in committed.values():
        expected[key] += 1
    assert {k: v for k, v in versions.items()} == {
        k: list(range(1, n + 1)) for k, n in expected.items()
    }
    assert kills >= KILLS
    print(
        f"outbox e2e ({backend.relays} relay(s), {make_name(backend.url)}): {COMMITS} commits, "
        f"{ROLLBACKS} rollbacks, {kills} relay kills, {relays.shipped_again()} rows shipped again "
        f"after a kill (deduped by Interlink), app {app_seconds:.1f} s, "
        f"total {time.monotonic() - started:.1f} s"
    )


def make_name(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgres") else "SQLite"
