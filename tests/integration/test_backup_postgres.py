"""Backup and restore on PostgreSQL with scripts/pg-backup.sh (pg_dump, pg_restore): taken while
events stream in, restored into a fresh database, Interlink resumes there; the same promises as
SQLite's backup (tests/integration/test_backup.py). Runs under INTERLINK_TEST_BACKEND=postgres."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.canary import Sweep
from tests.conftest import app_url, connect, create_database, drop_database
from tests.integration.conftest import (
    _DATABASE_URL_ENV,
    TEST_KEY,
    database_backend,
    eventually,
    running,
    settings_for,
)
from tests.integration.test_backup import under_load

pytestmark = pytest.mark.skipif(
    database_backend() != "postgres", reason="PostgreSQL's backup (SQLite: test_backup.py)"
)
SCRIPT = Path(__file__).parents[2] / "scripts" / "pg-backup.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


async def _ids(owner_url: str, query: str) -> set[str]:
    conn = await connect(owner_url)
    try:
        await conn.execute("SELECT set_config('interlink.scope', 'system', false)")
        return {row[0] for row in await conn.fetch(query)}
    finally:
        await conn.close()


async def test_a_pg_dump_under_load_restores_acknowledged_events_and_resumes_deliveries(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    canary: Sweep,
    receiver_factory: Any,
    postgres_url: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    live = os.environ[_DATABASE_URL_ENV]  # the owner's URL of this test's fresh database
    copy = tmp_path / "interlink.dump"
    receiver = await receiver_factory()
    # On PostgreSQL no start-up releases leases (other processes may share the database): a
    # delivery in flight when the dump was taken is sent again from the restored database once
    # its lease lapses, here 2 s after it was taken rather than the default 120 s.
    leased = settings_for(tmp_path, delivery_lease_seconds=2.0)
    async with running(leased, canary) as h:
        take = functools.partial(_script, "backup", live, str(copy))
        dumped, began, acked = await under_load(h, receiver, take, rate_limit=100)
        assert dumped.returncode == 0, dumped.stderr
    assert _script("backup", live, str(copy)).returncode == 1  # never overwrites

    target = create_database(postgres_url)
    try:
        restored = await asyncio.to_thread(_script, "restore", target, str(copy))
        assert restored.returncode == 0, restored.stderr
        again = _script("restore", target, str(copy))
        assert again.returncode == 1 and "restore into an empty one" in again.stderr
        before = {event_id for event_id, at in acked if at < began}
        in_backup = await _ids(target, "SELECT id FROM events")
        delivered = await _ids(target, "SELECT event_id FROM deliveries WHERE status = 'succeeded'")
        assert len(before) > 100 and before <= in_backup and len(in_backup) < len(acked)
        assert 0 < len(delivered) < len(in_backup)

        arrived_before = len(receiver.received)
        settings = settings_for(
            tmp_path,
            database_url=app_url(target),
            migration_database_url=target,
            secrets_key=[TEST_KEY],
        )
        async with running(settings, canary):
            await eventually(lambda: in_backup <= {w for w, _ in receiver.received}, 60)
            await asyncio.sleep(0.5)
        sent_again = [w for w, _ in receiver.received[arrived_before:] if w in delivered]
        assert sent_again == []
    finally:
        drop_database(postgres_url, target)
