"""Backup and restore of the embedded default (storage/sqlite/backup.py, `interlink backup` and
`interlink restore`): a backup taken while events stream in holds every event acknowledged
before it began; restored on a fresh database, Interlink resumes the pending deliveries and
sends none again that the backup holds as delivered. And the refusals, each with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.canary import Sweep
from tests.integration.conftest import (
    Harness,
    Receiver,
    database_backend,
    eventually,
    running,
    settings_for,
    signed,
)
from tests.integration.test_ingest import make_source
from typer.testing import CliRunner, Result

from interlink import cli
from interlink.storage.sqlite.backup import backup

pytestmark = pytest.mark.skipif(
    database_backend() == "postgres", reason="SQLite's backup (PostgreSQL: scripts/pg-backup.sh)"
)

RATE = 500.0  # events a second while the backup is taken
T = TypeVar("T")


async def stream(h: Harness, source: str, secret: str, acked: list[tuple[str, float]]) -> None:
    """Signed webhooks at RATE (from several senders, as partners send) until cancelled; each
    202 recorded with when it was answered."""
    senders = 10

    async def sender(first: int) -> None:
        n, began = first, time.monotonic()
        while True:
            event = {"type": "booking.created", "data": {"n": n}}
            body, headers = signed(secret, f"msg_{n}", event)
            r = await h.client.post(f"/in/{source}", content=body, headers=headers)
            assert r.status_code == 202, r.text
            acked.append((r.json()["id"], time.time()))
            n += senders
            ahead = began + (n - first) / RATE - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    async with asyncio.TaskGroup() as group:
        for first in range(senders):
            group.create_task(sender(first))


async def under_load(
    h: Harness, receiver: Receiver, take: Callable[[], T], rate_limit: int = 150
) -> tuple[T, float, list[tuple[str, float]]]:
    """``take`` (a backup, run in a thread) 1.5 s into a stream of events at RATE to an endpoint
    that takes ``rate_limit`` a second (so deliveries are still owed): what it returned, when
    it began, and every event acknowledged with when."""
    key = await h.tenant()
    source, secret = await make_source(h, key)
    limited = {"url": receiver.url, "rate_limit": {"rate": rate_limit, "per": "second"}}
    ep = await h.post(key, "/api/v1/endpoints", limited)
    receiver.secret = ep["secret"]
    subscription = {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    await h.post(key, "/api/v1/subscriptions", subscription)
    acked: list[tuple[str, float]] = []
    streaming = asyncio.create_task(stream(h, source, secret, acked))
    await asyncio.sleep(1.5)
    began = time.time()
    taken = await asyncio.to_thread(take)  # while events keep arriving
    await asyncio.sleep(0.5)
    streaming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await streaming
    return taken, began, acked


def _rows(path: Path, query: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute(query)}


async def _cli(args: Sequence[str], database: Path) -> Result:
    env = {"INTERLINK_DATABASE_URL": f"sqlite:///{database}"}
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=env)


async def test_a_backup_under_load_restores_acknowledged_events_and_resumes_deliveries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep, receiver_factory: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # the secrets key file (.interlink/) is shared by both
    live, restored, copy = tmp_path / "live.db", tmp_path / "restored.db", tmp_path / "b.db"
    receiver = await receiver_factory()
    async with running(settings_for(tmp_path, database_url=f"sqlite:///{live}"), canary) as h:
        done, began, acked = await under_load(h, receiver, lambda: backup(live, copy))
    before = {event_id for event_id, at in acked if at < began}
    in_backup = _rows(copy, "SELECT id FROM events")
    delivered = _rows(copy, "SELECT event_id FROM deliveries WHERE status = 'succeeded'")
    assert len(before) > 100 and before <= in_backup and done.events == len(in_backup)
    assert len(in_backup) < len(acked)  # it was taken while events kept coming
    assert 0 < len(delivered) < len(in_backup)  # some delivered, the rest still owed
    assert os.stat(copy).st_mode & 0o777 == 0o600

    restoring = await _cli(["restore", str(copy)], restored)
    assert restoring.exit_code == 0, restoring.output
    assert f"restored {len(in_backup):,} events" in restoring.output
    arrived_before = len(receiver.received)
    async with running(settings_for(tmp_path, database_url=f"sqlite:///{restored}"), canary):
        await eventually(lambda: in_backup <= {w for w, _ in receiver.received}, 60)
        await asyncio.sleep(0.5)  # anything sent twice would arrive meanwhile
    again = [w for w, _ in receiver.received[arrived_before:] if w in delivered]
    assert again == [], f"{len(again)} deliveries done in the backup were sent again"


async def test_backup_and_restore_refuse_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep
) -> None:
    monkeypatch.chdir(tmp_path)
    live, copy = tmp_path / "live.db", tmp_path / "b.db"
    async with running(settings_for(tmp_path, database_url=f"sqlite:///{live}"), canary) as h:
        await make_source(h, await h.tenant())
        made = await _cli(["backup", str(copy)], live)
        assert made.exit_code == 0, made.output
        assert "the secrets key is not in it" in made.output
        again = await _cli(["backup", str(copy)], live)
        assert again.exit_code == 1 and "exists" in again.output
        running_here = await _cli(["restore", str(copy), "--replace"], live)
        assert running_here.exit_code == 1
        assert "another Interlink process is running" in running_here.output

    over = await _cli(["restore", str(copy)], live)
    assert over.exit_code == 1 and "--replace" in over.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    refused = await _cli(["restore", str(junk)], tmp_path / "fresh.db")
    assert refused.exit_code == 1 and "not a readable SQLite database" in refused.output
    (tmp_path / ".interlink" / "secrets.key").rename(tmp_path / "elsewhere.key")
    keyless = await _cli(["restore", str(copy)], tmp_path / "fresh.db")
    assert keyless.exit_code == 1 and "no secrets key is configured" in keyless.output
    other_key = {"INTERLINK_SECRETS_KEY": "A" * 43 + "="}
    wrong = await asyncio.to_thread(
        CliRunner().invoke,
        cli.app,
        ["restore", str(copy)],
        env={"INTERLINK_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}", **other_key},
    )
    assert wrong.exit_code == 1 and "sealed with a key that is not configured" in wrong.output
    assert not (tmp_path / "fresh.db").exists()
    (tmp_path / "elsewhere.key").rename(tmp_path / ".interlink" / "secrets.key")
    replaced = await _cli(["restore", str(copy), "--replace"], live)
    assert replaced.exit_code == 0, replaced.output
