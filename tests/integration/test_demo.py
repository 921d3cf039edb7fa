"""The demo in-process: the real ``serve``, partner and receivers, for a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import io
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rich.console import Console
from tests.integration.conftest import free_port
from tests.readme import readme_block, venv_here

from interlink.app import AlreadyRunning, Interlink, serve
from interlink.config import Settings
from interlink.demo.partner import SendKind, SimulatedPartner
from interlink.demo.receiver import Behaviour, DemoReceiver
from interlink.demo.runner import (
    DEMO_DATABASE,
    DEMO_KEY_FILE,
    Demo,
    demo_settings,
    render,
    reset_database,
)
from interlink.ingress.verifiers import standard_webhooks

# Shorter than the demo's own 0·1·2·4·8 s so a dead letter shows within a few seconds.
FAST_RETRIES = (0, 0.5, 1, 1)


async def _eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


@dataclass
class Running:
    demo: Demo
    system: Interlink


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.chdir(tmp_path)
    settings = demo_settings(Settings(port=free_port()))
    reset_database()
    demo = Demo(settings, rate=40, retry_schedule=FAST_RETRIES, seed=7)
    ready = asyncio.Event()
    failure: list[BaseException] = []

    async def started(system: Interlink) -> None:
        try:
            await demo.setup(system)
            await demo.start()
        except BaseException as exc:  # serve() would swallow it
            failure.append(exc)
            raise
        finally:
            ready.set()

    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(settings, on_started=started, on_settled=demo.on_settled, stop=stop)
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert not failure, failure
        assert demo.system is not None
        yield Running(demo, demo.system)
    finally:
        await demo.stop_partner()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await demo.stop()


async def test_demo_delivers_dedupes_rejects_and_dead_letters(running: Running) -> None:
    demo, system = running.demo, running.system
    assert demo.partner is not None
    partner = demo.partner
    healthy, flaky, down = (
        demo.receiver(n) for n in ("bookings-api", "channel-manager", "legacy-crm")
    )
    healthy_id, down_id = demo.endpoint_id("bookings-api"), demo.endpoint_id("legacy-crm")

    # Uses the demo's files, relative to the working directory; the key only in a 0600 file.
    assert Path(system.settings.database_url.removeprefix("sqlite:///")) == DEMO_DATABASE
    assert stat.S_IMODE(DEMO_KEY_FILE.stat().st_mode) == 0o600
    assert await system.management.tenant_for_key(DEMO_KEY_FILE.read_text().strip()) is not None

    # One of each kind for certain, besides what the ratios pick.
    await _eventually(lambda: partner.stats.accepted > 0, 5, "a first accepted event")
    assert (await partner.send_one(SendKind.DUPLICATE)).duplicate
    forged = await partner.send_one(SendKind.FORGED)
    assert forged.status == 401
    assert forged.detail is not None and "signature" in forged.detail

    async def dead_letters() -> bool:
        return (await system.deliveries.counts()).get(down_id, {}).get("dead", 0) >= 3

    await _eventually(dead_letters, 15, "legacy-crm deliveries dead-lettered")

    # Then its breaker opens: the deliveries still due wait without spending attempts.
    async def breaker_tripped() -> bool:
        await demo.refresh_counts()
        return demo.views[2].breaker != "closed"

    await _eventually(breaker_tripped, 30, "legacy-crm's circuit breaker open")
    await demo.stop_partner()

    s = partner.stats
    assert s.errors == 0
    assert s.sent == s.accepted + s.duplicates + s.rejected
    # Every resend of an accepted event was deduplicated; every forgery, and only those, refused.
    assert s.duplicates == s.sent_duplicates > 0
    assert s.rejected == s.sent_forged > 0
    assert set(s.rejections) == {"401 signature verification failed: no signature matched"}
    assert await system.events.count() == s.accepted

    # Everything the healthy endpoint subscribes to arrives once, correctly signed.
    wanted = sum(n for t, n in s.accepted_by_type.items() if t.startswith("booking."))

    async def healthy_drained() -> bool:
        return (await system.deliveries.counts()).get(healthy_id, {}) == {"succeeded": wanted}

    await _eventually(healthy_drained, 10, f"{wanted} deliveries to bookings-api")
    assert healthy.stats.unique == wanted
    assert healthy.stats.duplicates == 0
    assert healthy.stats.by_status == {200: wanted}
    for receiver in (healthy, flaky, down):
        assert receiver.stats.received > 0
        assert receiver.stats.bad_signatures == 0

    # The flaky one needed retries; the one that is down never got a delivery through.
    attempts = await system.deliveries.attempt_counts()
    assert attempts[demo.endpoint_id("channel-manager")].get("failed", 0) > 0
    assert "succeeded" not in attempts[down_id]
    assert set(down.stats.by_status) == {503}
    await demo.refresh_counts()
    assert demo.views[2].deliveries.get("dead", 0) >= 3
    assert demo.views[2].last_status == "503"

    # The view renders from the same counters, wide and narrow.
    for width in (120, 80):
        out = io.StringIO()
        console = Console(file=out, width=width, height=40, color_system=None)
        console.print(render(demo, console))
        assert "bookings-api" in out.getvalue()
        assert "legacy-crm" in out.getvalue()


async def test_receiver_refuses_a_bad_signature_and_counts_redeliveries() -> None:
    secret = standard_webhooks.generate_secret()
    body = b'{"type":"booking.created","data":{}}'
    async with (
        DemoReceiver("r", secret, Behaviour.HEALTHY) as receiver,
        aiohttp.ClientSession() as session,
    ):

        async def post(signing_secret: str, msg_id: str) -> int:
            ts = int(time.time())
            headers: dict[str, Any] = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": standard_webhooks.sign(signing_secret, msg_id, ts, body),
            }
            async with session.post(receiver.url, data=body, headers=headers) as response:
                return response.status

        assert await post(standard_webhooks.generate_secret(), "msg_1") == 401
        assert await post(secret, "msg_1") == 200
        assert await post(secret, "msg_1") == 200
        receiver.behaviour = Behaviour.DOWN
        assert await post(secret, "msg_2") == 503
    stats = receiver.stats
    assert (stats.received, stats.bad_signatures, stats.unique, stats.duplicates) == (4, 1, 2, 1)


async def test_partner_counts_network_errors_without_raising() -> None:
    secret = standard_webhooks.generate_secret()
    async with SimulatedPartner(f"http://127.0.0.1:{free_port()}/in/src_x", secret) as partner:
        result = await partner.send_one()
    assert result.status is None
    assert partner.stats.errors == 1


def test_reset_database_refuses_while_a_demo_holds_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    DEMO_DATABASE.parent.mkdir()
    DEMO_DATABASE.write_bytes(b"")
    lock = DEMO_DATABASE.with_name(DEMO_DATABASE.name + ".lock")
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AlreadyRunning):
            reset_database()
        assert DEMO_DATABASE.exists()
    reset_database()
    assert not DEMO_DATABASE.exists()
    assert not lock.exists()


async def test_the_send_command_the_demo_prints_is_delivered(running: Running) -> None:
    """The header's "Send one" command, as a user would paste it, signs with the demo source's
    secret, is accepted, and reaches the receiver the view and the API both call bookings-api."""
    import shlex

    from typer.testing import CliRunner

    from interlink import cli
    from interlink.demo.runner import DEMO_SOURCE_SECRET_FILE, send_command

    demo, system = running.demo, running.system
    assert stat.S_IMODE(DEMO_SOURCE_SECRET_FILE.stat().st_mode) == 0o600
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(render(demo, Console(width=100)))
    assert "sources send" in out.getvalue()
    args = shlex.split(send_command(demo).replace("\\\n", " "))
    assert args[:2] == ["interlink", "sources"]
    env = {"INTERLINK_API_URL": system.settings.public_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, args[1:], env=env)
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["duplicate"] is False

    # The README's demo block, as written (the port aside), from a second terminal.
    venv_here(Path.cwd(), sys.executable)
    block = "\n".join(["set -euo pipefail", *readme_block("demo")])
    port = str(system.settings.port)
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", block.replace("8400", port)],
        env={**os.environ, "INTERLINK_API_URL": system.settings.public_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # curl's answer has no newline: the send's answer is the last JSON object printed
    from_readme = json.loads(done.stdout[done.stdout.rindex('{"id"') :])
    assert from_readme["duplicate"] is False

    key = DEMO_KEY_FILE.read_text().strip()
    async with aiohttp.ClientSession(
        system.settings.public_url, headers={"Authorization": f"Bearer {key}"}
    ) as http:

        async def delivered_to_bookings_api() -> bool:
            for event_id in (sent["id"], from_readme["id"]):
                params = {"event_id": event_id, "endpoint_id": demo.endpoint_id("bookings-api")}
                async with http.get("/api/v1/deliveries", params=params) as r:
                    if [d["status"] for d in (await r.json())["data"]] != ["succeeded"]:
                        return False
            return True

        await _eventually(delivered_to_bookings_api, 15, "the sent event at bookings-api")
        async with http.get("/api/v1/endpoints") as r:
            described = {e["id"]: e["description"] for e in (await r.json())["data"]}
    for view in demo.views:
        assert described[view.endpoint_id].startswith(f"{view.spec.name}: demo receiver")


def test_the_view_keeps_its_headers_and_says_held_behind_an_open_breaker() -> None:
    demo = Demo(demo_settings(Settings()), key_file=None)
    demo.source_id = "src_01JEXAMPLE0000000000000000"
    demo.views[2].breaker = "open"
    demo.views[2].deliveries = {"pending": 6914, "in_flight": 0}
    for width in (80, 100, 120):
        out = io.StringIO()
        console = Console(file=out, width=width, height=40, color_system=None)
        console.print(render(demo, console))
        text = out.getvalue()
        assert "6,914 held" in text or "6.9k held" in text, text
        table = text.split("Endpoints", 1)[1].split("Recent")[0]
        assert "…" not in table, text  # no header squeezed and cut
        for word in ("endpoint", "delivered", "queued", "dead", "attempts", "receiver"):
            assert word in text, (width, word, text)
        # The console, and where its login key is (never the key itself).
        assert "/console" in text and "demo-tenant.key" in text.replace("\n", ""), text
