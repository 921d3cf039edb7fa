"""docs/services.md as written: each marked snippet runs against ``interlink up`` (the Python
ones as scripts of their own, the shell ones with bash, in a fresh directory), and what they
claim holds: the endpoint gets the published and the outbox's events with valid signatures,
the DDL shown is what ``interlink-outbox ddl`` prints, and the Alembic migration makes the
table the relay ships from (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from tests.readme import SERVICES, services_block, venv_here

from interlink_client.outbox import outbox, publish_async
from interlink_client.outbox.relay import Relay, engine_for

from .conftest import Api, InterlinkProcess, Receivers, wait_for

pytestmark = pytest.mark.e2e

DOC_URL = "http://127.0.0.1:8400"
DOC_ENDPOINT = "https://billing.example.com/interlink"
CONSUME = "interlink_client.consumer.cli"


async def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{argv[:2]}: {done.stdout}{done.stderr}"
    return done.stdout


async def test_the_walk_through_runs_as_written(
    api: Api, interlink: InterlinkProcess, receivers: Receivers, tmp_path: Path
) -> None:
    venv_here(tmp_path, sys.executable)
    tenant = await api.tenant("services")
    receiver = await receivers.start("billing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
    env |= {"INTERLINK_API_URL": interlink.base_url, "INTERLINK_API_KEY": tenant.key}

    async def python(name: str) -> str:
        script = tmp_path / f"{name}.py"
        script.write_text(services_block(name, "python").replace(DOC_ENDPOINT, receiver.url))
        return await _run([sys.executable, str(script)], tmp_path, env)

    async def sh(name: str) -> str:
        script = services_block(name, "sh").replace(DOC_URL, interlink.base_url)
        return await _run(["bash", "-c", "set -euo pipefail\n" + script], tmp_path, env)

    receiver.secret = (await python("endpoint")).strip()
    assert receiver.secret.startswith("whsec_"), receiver.secret
    pull_endpoint = (await python("pull-endpoint")).strip()
    printed = (await python("publish")).splitlines()
    assert printed[1].startswith("422 ") and "catalog type booking.created" in printed[1]
    await python("outbox")
    await sh("relay")

    stored = await api.events(tenant, type="booking.confirmed")
    assert sorted(e["data"]["booking_id"] for e in stored) == ["b-1", "b-2", "b-3", "b-9"]
    assert [e["idempotency_key"] for e in stored if e["key"] == "b-9"] == ["outbox-1"]
    await wait_for(lambda: len(receiver.counts) == 4, timeout=30, what="4 events at the endpoint")
    assert not receiver.bad_signatures
    assert sorted(b["data"]["booking_id"] for b in receiver.bodies.values()) == [
        "b-1",
        "b-2",
        "b-3",
        "b-9",
    ]

    # The consumer module, run as shown, gets the same four; SIGTERM stops it cleanly.
    (tmp_path / "billing_consumer.py").write_text(services_block("consumer", "python"))
    script = services_block("consume", "sh").replace("ep_...", pull_endpoint)
    if not (Path(sys.executable).parent / "interlink-consume").exists():
        # a .venv installed before the SDK had the script: the same entry point
        script = script.replace(".venv/bin/interlink-consume", f"{sys.executable} -m {CONSUME}")
    # exec: the SIGTERM is the consumer's, not the shell's
    consumer = await asyncio.create_subprocess_exec(
        "bash", "-c", "exec env " + script, cwd=tmp_path, env=env, stdout=subprocess.PIPE
    )
    assert consumer.stdout is not None
    try:
        lines = [
            (await asyncio.wait_for(consumer.stdout.readline(), 30)).decode() for _ in range(4)
        ]
    finally:
        consumer.terminate()
        code = await asyncio.wait_for(consumer.wait(), 15)
    assert code == 0
    assert sorted(line.split()[2] for line in lines) == ["b-1", "b-2", "b-3", "b-9"]
    assert all(line.startswith("booking.confirmed ") for line in lines)
    consumed = await api.deliveries(tenant, endpoint_id=pull_endpoint)
    assert sorted(d["status"] for d in consumed) == ["succeeded"] * 4


async def test_the_ddl_shown_is_what_the_command_prints(tmp_path: Path) -> None:
    venv_here(tmp_path, sys.executable)
    printed = await _run(["bash", "-c", services_block("ddl", "sh")], tmp_path, dict(os.environ))
    shown = re.search(r"```sql\n(.*?)```", SERVICES.read_text(), re.S)
    assert shown and shown.group(1) == printed


@pytest.fixture(params=["sqlite", "postgres"])
def service_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/service.db"
    return str(request.getfixturevalue("postgres_database"))


async def test_the_alembic_migration_makes_the_outbox_table(service_url: str) -> None:
    migration: dict[str, object] = {}
    exec(compile(services_block("alembic", "python"), "migration.py", "exec"), migration)
    engine = engine_for(service_url)

    def upgrade(conn: sa.Connection) -> None:
        with Operations.context(MigrationContext.configure(conn)):
            migration["upgrade"]()  # type: ignore[operator]

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("interlink_outbox")}
            )
            assert columns == {c.name for c in outbox.columns}
            await publish_async(conn, "order.placed", {"n": 1}, key="k")
            await publish_async(conn, "order.placed", {"n": 2}, key="k")
        relay = Relay(engine, client=None)  # type: ignore[arg-type]  # claims only, ships nothing
        async with engine.begin() as conn:
            claimed = await relay.claim(conn)
        assert [(r.id, r.event_key) for r in claimed] == [(1, "k"), (2, "k")]
    finally:
        await engine.dispose()
