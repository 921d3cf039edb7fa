"""Erasure (`POST /api/v1/erasures`, storage/erasure.py) in process, on SQLite and PostgreSQL:
one guest's events among others' are redacted with their attempts' answers, owed deliveries
cancelled, another tenant's identical data untouched; the job record holds no erased value;
no byte of the guest's details remains in the SQLite file after a checkpoint and VACUUM, or in
a plain pg_dump. Bad selectors get a clear 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web
from tests.integration.conftest import (
    _DATABASE_URL_ENV,
    Harness,
    database_backend,
    eventually,
    signed,
)
from tests.integration.test_ingest import make_source

ALICE = {"email": "alice.erasure@example.com", "name": "Alice Erasmus", "phone": "+15550001111"}
BOB = {"email": "bob.kept@example.com", "name": "Bob Kept", "phone": "+15550002222"}
EVENTS = 300  # every tenth is Alice's


async def _echo_receiver() -> tuple[str, web.AppRunner]:
    """Answers 200 with the body it got: its answer's excerpt then holds the guest's data."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_post("/hook", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}/hook", runner


async def _send(h: Harness, source: str, secret: str, n: int, guest: dict[str, str]) -> str:
    event = {"type": "booking.created", "data": {"booking": f"b-{n}", "guest": guest}}
    body, headers = signed(secret, f"msg_{n}", event)
    r = await h.client.post(f"/in/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _deliveries(h: Harness, key: str, status: str) -> list[dict[str, Any]]:
    r = await h.get(key, "/api/v1/deliveries", status=status, limit=500)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_an_erasure_redacts_one_guest_everywhere_and_nothing_else(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    key = await h.tenant()
    source, secret = await make_source(h, key)
    url, runner = await _echo_receiver()
    try:
        ep = (await h.post(key, "/api/v1/endpoints", {"url": url}))["endpoint"]["id"]
        await h.post(key, "/api/v1/subscriptions", {"endpoint_id": ep, "event_types": ["*"]})
        alice: list[str] = []
        # The first half is delivered (echoed answers stored), the second waits, paused.
        for n in range(EVENTS // 2):
            (alice if n % 10 == 0 else []).append(await _send(h, source, secret, n, _guest(n)))
        await eventually(lambda: _count(h, key, "succeeded", EVENTS // 2), 30)
        paused = await h.client.patch(
            f"/api/v1/endpoints/{ep}", json={"status": "paused"}, headers=h.auth(key)
        )
        assert paused.status_code == 200
        for n in range(EVENTS // 2, EVENTS):
            (alice if n % 10 == 0 else []).append(await _send(h, source, secret, n, _guest(n)))
        await eventually(lambda: _count(h, key, "pending", EVENTS // 2), 30)
        other = await h.tenant("other")  # the same details under another tenant stay
        other_source, other_secret = await make_source(h, other)
        kept_elsewhere = await _send(h, other_source, other_secret, 0, ALICE)

        r = await h.client.post(
            "/api/v1/erasures",
            json={"path": "data.guest.email", "equals": ALICE["email"]},
            headers=h.auth(key),
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "erasure" and ALICE["email"] not in json.dumps(job)

        async def finished() -> bool:
            got = (await h.get(key, f"/api/v1/jobs/{job['id']}")).json()
            return bool(got["status"] == "succeeded")

        await eventually(finished, 30)
        record = (await h.get(key, f"/api/v1/jobs/{job['id']}")).json()
        assert record["done"] == EVENTS and record["done"] - record["skipped"] == len(alice)
        assert record["filter"]["path"] == ["guest", "email"]
        assert record["filter"]["requested_by"].startswith("key_")
        assert ALICE["email"] not in json.dumps(record)

        for event_id in alice:
            got = (await h.get(key, f"/api/v1/events/{event_id}")).json()
            assert got["data"] == {"erased": True} and got["headers"] == {}
        kept = (await h.get(other, f"/api/v1/events/{kept_elsewhere}")).json()
        assert kept["data"]["guest"] == ALICE
        cancelled = await _deliveries(h, key, "cancelled")
        assert {d["event_id"] for d in cancelled} == {a for a in alice[len(alice) // 2 :]}
        assert {d["last_error"] for d in cancelled} == {"erased"}
        assert len(await _deliveries(h, key, "pending")) == EVENTS // 2 - len(cancelled)
        attempts = (await h.get(key, f"/api/v1/deliveries/{_first(cancelled)}/attempts")).json()
        assert attempts["data"] == []  # never sent
    finally:
        await runner.cleanup()

    if database_backend() == "sqlite":
        await h.system.stop()  # its connections closed: the file is all there is
    stored = await asyncio.to_thread(_stored_bytes, tmp_path)
    for detail in ALICE.values():
        # Only the other tenant's copy is left: exactly one occurrence of each detail.
        assert stored.count(detail.encode()) <= _copies_elsewhere(stored, detail), detail
    assert BOB["email"].encode() in stored


def _guest(n: int) -> dict[str, str]:
    return ALICE if n % 10 == 0 else BOB


def _first(rows: list[dict[str, Any]]) -> str:
    return str(rows[0]["id"])


async def _count(h: Harness, key: str, status: str, n: int) -> bool:
    return len(await _deliveries(h, key, status)) >= n


def _copies_elsewhere(stored: bytes, detail: str) -> int:
    # The other tenant's event: its data and raw body each hold the detail once (PostgreSQL's
    # dump writes bytea as hex: there the raw body's copy is not in plain text).
    return 2 if database_backend() == "sqlite" else 1


def _stored_bytes(tmp_path: Path) -> bytes:
    """The store as bytes: the SQLite file after a checkpoint and VACUUM, or a plain dump."""
    if database_backend() == "sqlite":
        path = tmp_path / "interlink.db"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return b"".join(
            p.read_bytes() for p in tmp_path.glob("interlink.db*") if p.suffix != ".lock"
        )
    dump = subprocess.run(
        ["pg_dump", "--no-password", "--enable-row-security", os.environ[_DATABASE_URL_ENV]],
        capture_output=True,
        check=True,
        env={**os.environ, "PGOPTIONS": "-c interlink.scope=system"},
        timeout=120,
    )
    return dump.stdout


async def test_bad_selectors_are_refused_clearly(harness: Harness) -> None:
    key = await harness.tenant()
    cases = [
        ({"path": "data..email", "equals": "x"}, 422, "path part"),
        ({"path": "data." + ".".join("a" * 17), "equals": "x"}, 422, "1 to 16 fields"),
        ({"path": "guest.email", "equals": "x" * 1001}, 400, "equals"),
        ({"path": "guest.email"}, 400, "equals"),
        ({"path": "guest.email", "equals": "x", "source_id": "src_nope"}, 404, "src_nope"),
        (
            {
                "path": "guest.email",
                "equals": "x",
                "after": "2026-02-01T00:00:00Z",
                "before": "2026-01-01T00:00:00Z",
            },
            422,
            "earlier",
        ),
    ]
    for body, status, words in cases:
        r = await harness.client.post("/api/v1/erasures", json=body, headers=harness.auth(key))
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["detail"], (body, r.json())
