"""Canary secrets pushed down the paths most likely to leak them (issue 4, acceptance 7).

The sweep (tests/canary.py) checks every test of the suite; here canaries are planted where a
leak is likeliest: receivers that echo the signed request back into the attempt record, a
receiver that fails, forged and misconfigured ingests, wrong API keys, failures logged with a
traceback, /metrics, the OpenAPI docs, every view of every resource, the console's pages and
the CLI's output. The canaries include values shaped like nothing the log redaction knows
(``canary-…``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from aiohttp import web
from standardwebhooks.webhooks import Webhook
from tests.canary import Sweep
from tests.integration.conftest import Harness, Receiver, eventually, running, settings_for, signed
from tests.integration.test_console import log_in
from typer.testing import CliRunner

from interlink import cli
from interlink.ingress.verifiers import standard_webhooks
from interlink.ingress.verifiers.hmac_scheme import sign_hmac
from interlink.storage.database import Database

HMAC = {"header": "x-signature", "encoding": "hex"}
BY_BODY_ID = {"id_from": "json:id", "type_path": "type", "data_path": "data"}


@dataclass
class EchoReceiver(Receiver):
    """Verifies each webhook, then answers with everything it was sent: headers and body."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(self.secret).verify(body, dict(request.headers))
        self.received.append((request.headers["webhook-id"], payload))
        status = self.answers.pop(0) if self.answers else self.default
        echo = {"headers": dict(request.headers), "body": body.decode()}
        return web.json_response(echo, status=status)


@pytest.fixture
async def echoes() -> AsyncIterator[list[EchoReceiver]]:
    made: list[EchoReceiver] = []
    yield made
    for receiver in made:
        await receiver.stop()


async def echo(made: list[EchoReceiver], status: int) -> EchoReceiver:
    receiver = EchoReceiver(default=status)
    await receiver.start()
    made.append(receiver)
    return receiver


@pytest.fixture
async def h(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep
) -> AsyncIterator[Harness]:
    """Interlink whose admin key and metrics token are canaries too."""
    monkeypatch.chdir(tmp_path)
    settings = settings_for(
        tmp_path,
        admin_key=canary.plant("admin key"),
        metrics_token=canary.plant("metrics token"),
        volume_monitor=False,
    )
    async with running(settings, canary) as harness:
        yield harness


@dataclass
class Wired:
    key: str
    hmac_source: str
    hmac_secret: str
    sw_source: str
    sw_secret: str
    ok: EchoReceiver
    ok_id: str
    failing: EchoReceiver
    failing_id: str


async def wire(h: Harness, canary: Sweep, made: list[EchoReceiver]) -> Wired:
    admin = h.system.settings.admin_key
    assert admin is not None
    tenant = await h.post(admin, "/api/v1/tenants", {"name": "acme"})
    key = tenant["api_key"]
    await h.post(admin, f"/api/v1/tenants/{tenant['tenant']['id']}/keys", {})
    hmac_secret = canary.plant("hmac source secret", "canary-hmac")
    hmac_source = await h.post(
        key,
        "/api/v1/sources",
        {
            "name": "pms",
            "verifier": "hmac",
            "verifier_config": HMAC,
            "secrets": [hmac_secret],
            "envelope": BY_BODY_ID,
        },
    )
    sw_secret = standard_webhooks.generate_secret()
    canary.secret(sw_secret, "planted signing secret of a source")
    sw_source = await h.post(key, "/api/v1/sources", {"name": "crm", "secrets": [sw_secret]})
    await h.post(key, "/api/v1/sources", {"name": "generated"})  # a secret made by Interlink

    ok, failing = await echo(made, 200), await echo(made, 500)
    ok.secret = standard_webhooks.generate_secret()
    canary.secret(ok.secret, "planted endpoint secret")
    ok_ep = await h.post(key, "/api/v1/endpoints", {"url": ok.url, "secret": ok.secret})
    failing_ep = await h.post(
        key, "/api/v1/endpoints", {"url": failing.url, "retry_schedule": [0, 0.05]}
    )
    failing.secret = failing_ep["secret"]
    for ep in (ok_ep, failing_ep):
        await h.post(
            key,
            "/api/v1/subscriptions",
            {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]},
        )
    return Wired(
        key,
        hmac_source["source"]["id"],
        hmac_secret,
        sw_source["source"]["id"],
        sw_secret,
        ok,
        ok_ep["endpoint"]["id"],
        failing,
        failing_ep["endpoint"]["id"],
    )


async def ingest(h: Harness, w: Wired, canary: Sweep, n: int) -> None:
    """A webhook to each source; the hmac partner also sends credentials of its own."""
    body = json.dumps({"id": f"pms-{n}", "type": "booking.created", "data": {"n": n}}).encode()
    headers = {
        "x-signature": sign_hmac(w.hmac_secret, body, HMAC),
        "authorization": f"Bearer {canary.plant('partner bearer token')}",
        "cookie": f"session={canary.plant('partner cookie')}",
        # GitLab-style: the shared secret itself in a header, next to the signature.
        "x-partner-token": w.hmac_secret,
        "content-type": "application/json",
    }
    r = await h.client.post(f"/in/{w.hmac_source}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    body, headers = signed(w.sw_secret, f"crm-{n}", {"type": "booking.updated", "data": {"n": n}})
    r = await h.client.post(f"/in/{w.sw_source}", content=body, headers=headers)
    assert r.status_code == 202, r.text


async def settled(h: Harness, w: Wired, count: int) -> list[dict[str, Any]]:
    async def done() -> bool:
        found = (await h.get(w.key, "/api/v1/deliveries", limit=500)).json()["data"]
        return len(found) == count and all(d["status"] in ("succeeded", "dead") for d in found)

    await eventually(done)
    return list((await h.get(w.key, "/api/v1/deliveries", limit=500)).json()["data"])


async def test_canaries_through_echoing_and_failing_receivers_and_every_view(
    h: Harness, canary: Sweep, echoes: list[EchoReceiver]
) -> None:
    w = await wire(h, canary, echoes)
    await ingest(h, w, canary, 1)
    deliveries = await settled(h, w, 4)
    assert sorted(d["status"] for d in deliveries) == ["dead"] * 2 + ["succeeded"] * 2

    # The attempt records hold the echo: the signed request came back into them. The signature
    # is there (it is no secret); the secrets behind it are not (the sweep checks).
    attempts = []
    for d in deliveries:
        r = await h.get(w.key, f"/api/v1/deliveries/{d['id']}/attempts")
        attempts += r.json()["data"]
    assert len(attempts) == 6
    assert all('"webhook-signature": "v1,' in a["response_excerpt"] for a in attempts)

    # Forged and misconfigured ingests, and wrong API keys: problem answers.
    body = json.dumps({"id": "forged", "type": "x", "data": {}}).encode()
    forged = sign_hmac(canary.plant("forging secret"), body, HMAC)
    for signature in (forged, w.hmac_secret):  # the secret itself sent as the signature
        r = await h.client.post(
            f"/in/{w.hmac_source}", content=body, headers={"x-signature": signature}
        )
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    body, headers = signed(standard_webhooks.generate_secret(), "forged", {"type": "x"})
    r = await h.client.post(f"/in/{w.sw_source}", content=body, headers=headers)
    assert r.status_code == 401
    for wrong in (canary.plant("wrong API key"), "ik_" + canary.plant("wrong key", "x")):
        r = await h.get(wrong, "/api/v1/sources")
        assert r.status_code == 401 and r.json()["detail"]
    other = await h.post(h.system.settings.admin_key or "", "/api/v1/tenants", {"name": "other"})
    r = await h.get(other["api_key"], f"/api/v1/sources/{w.hmac_source}")
    assert r.status_code == 404

    # Operators' levers, then every view of every resource.
    event_id = (await h.get(w.key, "/api/v1/events", source_id=w.hmac_source)).json()["data"][0][
        "id"
    ]
    # What the partner's credentials came with is kept without them (ingress/app.py).
    kept = (await h.get(w.key, f"/api/v1/events/{event_id}")).json()["headers"]
    assert "x-signature" in kept
    assert not {"x-partner-token", "authorization", "cookie"} & kept.keys()
    r = await h.client.post(f"/api/v1/events/{event_id}/replay", headers=h.auth(w.key))
    assert r.status_code == 202
    dead = next(d for d in deliveries if d["status"] == "dead")
    r = await h.client.post(f"/api/v1/deliveries/{dead['id']}/retry", headers=h.auth(w.key))
    assert r.status_code == 202
    r = await h.client.patch(
        f"/api/v1/endpoints/{w.ok_id}", json={"description": "echo"}, headers=h.auth(w.key)
    )
    assert r.status_code == 200
    await settled(h, w, 4)
    for path in await every_view(h, w.key):
        r = await h.get(w.key, path)
        assert r.status_code == 200, (path, r.text)
    admin = h.system.settings.admin_key or ""
    for path in ("/api/v1/tenants", f"/api/v1/tenants/{other['tenant']['id']}"):
        assert (await h.get(admin, path)).status_code == 200
    r = await h.client.get("/metrics", headers=h.auth(h.system.settings.metrics_token or ""))
    assert r.status_code == 200 and "interlink_" in r.text
    assert (await h.client.get("/metrics")).status_code == 401
    for path in ("/openapi.json", "/docs", "/healthz", "/readyz"):
        assert (await h.client.get(path)).status_code == 200, path

    # The console's pages over the same data, the timelines with the echoed attempts included:
    # the sweep reads every page as it reads the API's answers.
    assert (await log_in(h.client, w.key)).status_code == 303
    endpoints = (await h.get(w.key, "/api/v1/endpoints")).json()["data"]
    pages = [
        "/console/",
        "/console/events",
        "/console/live/rows",
        "/console/endpoints",
        "/console/dead",
        "/console/quarantine",
        "/console/partners",
        *(f"/console/events/{d['event_id']}" for d in deliveries),
        *(f"/console/endpoints/{e['id']}" for e in endpoints),
    ]
    for path in pages:
        assert (await h.client.get(path)).status_code == 200, path

    # Not vacuous: the canaries were in play, and the logs saw the rejections.
    assert canary.log_lines() and any("ingest.rejected" in line for line in canary.log_lines())
    assert {w.hmac_secret, w.sw_secret, w.ok.secret} <= canary.secrets.keys()
    canary.assert_clean()


async def test_bad_input_carrying_a_secret_is_refused_without_echoing_it(
    h: Harness, canary: Sweep
) -> None:
    admin = h.system.settings.admin_key or ""
    key = (await h.post(admin, "/api/v1/tenants", {"name": "acme"}))["api_key"]
    secret = canary.plant("secret in bad input")
    url = "http://127.0.0.1:9/hook"
    bad: list[tuple[str, Any]] = [
        ("/api/v1/endpoints", {"url": url, "secret": secret}),  # not a whsec_ secret
        ("/api/v1/endpoints", {"url": url, "secret": [secret]}),
        ("/api/v1/endpoints", {"url": f"ftp://{secret}@example.com/", "secret": secret}),
        ("/api/v1/sources", {"name": "p", "secrets": [secret]}),  # standard_webhooks
        ("/api/v1/sources", {"name": "p", "secrets": secret}),
        ("/api/v1/sources", {"name": "p", "verifier": "none", "secrets": [secret]}),
        ("/api/v1/sources", {"name": "p", "verifier": "hmac", "secrets": [secret, ""]}),
        ("/api/v1/sources", {"name": "p", "verifier": "rot13", "secrets": [secret]}),
        ("/api/v1/sources", {"name": "p", "secrets": [secret], "colour": secret}),
    ]
    for path, body in bad:
        r = await h.client.post(path, json=body, headers=h.auth(key))
        # 400 or 422 (a rule the OpenAPI document cannot state): refused either way
        assert r.status_code in (400, 422) and r.json()["detail"], (path, body, r.text)
    truncated = json.dumps({"url": url, "secret": secret}).encode()[:-2]
    r = await h.client.post("/api/v1/endpoints", content=truncated, headers=h.auth(key))
    assert r.status_code == 400 and "JSON is malformed" in r.json()["detail"]
    r = await h.client.post("/api/v1/endpoints", json={"url": url}, headers=h.auth(key))
    endpoint_id = r.json()["endpoint"]["id"]
    r = await h.client.patch(
        f"/api/v1/endpoints/{endpoint_id}", json={"secret": secret}, headers=h.auth(key)
    )
    assert r.status_code == 400
    canary.assert_clean()


async def every_view(h: Harness, key: str) -> list[str]:
    """The list and get paths of every resource the tenant has."""
    paths = ["/api/v1/sources", "/api/v1/endpoints", "/api/v1/subscriptions"]
    paths += ["/api/v1/events", "/api/v1/deliveries"]
    found: list[str] = []
    for listing in list(paths):
        items = (await h.get(key, listing, limit=500)).json()["data"]
        found += [f"{listing}/{item['id']}" for item in items]
    for path in list(found):
        if path.startswith("/api/v1/deliveries/"):
            found.append(f"{path}/attempts")
        if path.startswith("/api/v1/events/"):
            found.append(f"{path}/timeline")
        if path.startswith("/api/v1/endpoints/"):
            found.append(f"{path}/health")
    return paths + found


async def test_failures_logged_with_a_traceback_carry_no_secret(
    h: Harness, canary: Sweep, echoes: list[EchoReceiver]
) -> None:
    w = await wire(h, canary, echoes)
    # Settling fails while the attempts table is away: the dispatcher logs it with a traceback.
    await rename(h, "attempts", "attempts_away")
    try:
        await ingest(h, w, canary, 1)
        await eventually(lambda: logged(canary, "dispatcher.settle_failed"))
    finally:
        await rename(h, "attempts_away", "attempts")
    # Appending fails while the events table is away: ingest answers 503 and logs why.
    await rename(h, "events", "events_away")
    try:
        body = json.dumps({"id": "pms-x", "type": "booking.created", "data": {}}).encode()
        headers = {"x-signature": sign_hmac(w.hmac_secret, body, HMAC)}
        r = await h.client.post(f"/in/{w.hmac_source}", content=body, headers=headers)
        assert r.status_code == 503 and "unavailable" in r.json()["detail"]
    finally:
        await rename(h, "events_away", "events")
    tracebacks = [line for line in canary.log_lines() if "Traceback" in line]
    assert tracebacks and logged(canary, "ingest.append_failed")
    canary.assert_clean()


def logged(canary: Sweep, event: str) -> bool:
    return any(f'"event": "{event}"' in line for line in canary.log_lines())


async def rename(h: Harness, table: str, to: str) -> None:
    # As the schema's owner: on PostgreSQL the application role owns no table.
    owner = Database(h.system.settings.migration_url)
    try:
        async with owner.write() as conn:
            await conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {to}"))
    finally:
        await owner.close()


async def test_cli_list_and_timeline_output_carries_no_secret(
    h: Harness, canary: Sweep, echoes: list[EchoReceiver]
) -> None:
    w = await wire(h, canary, echoes)
    await ingest(h, w, canary, 1)
    await settled(h, w, 4)
    event_id = (await h.get(w.key, "/api/v1/events", source_id=w.hmac_source)).json()["data"][0][
        "id"
    ]
    commands = [
        ["sources", "list"],
        ["endpoints", "list"],
        ["endpoints", "health", w.ok_id],
        ["subscriptions", "list"],
        ["events", "timeline", event_id],
        ["events", "timeline", event_id, "--json"],
    ]
    async with serving(h) as url:
        env = {"INTERLINK_API_URL": url, "INTERLINK_API_KEY": w.key}
        for args in commands:
            result = await asyncio.to_thread(CliRunner().invoke, cli.app, args, env=env)
            assert result.exit_code == 0, result.output
            canary.capture("output", f"the output of `interlink {' '.join(args)}`", result.output)
    outputs = [c.text for c in canary.captures if c.kind == "output"]
    assert w.hmac_source in outputs[0] and w.ok_id in outputs[1] and event_id in outputs[4]
    canary.assert_clean()


@contextlib.asynccontextmanager
async def serving(h: Harness) -> AsyncIterator[str]:
    """The harness's Interlink on a loopback port, for clients outside the process's loop."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(h.system, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_sweep_finds_a_secret_in_an_attempt_record(
    h: Harness, canary: Sweep, echoes: list[EchoReceiver], tmp_path: Path
) -> None:
    """The record reading is no formality: a copy of this database with a secret planted in an
    attempt's excerpt is reported. (A copy, so the session's sweep of the real one stays green.)"""
    if not h.system.db.is_sqlite:
        pytest.skip("reads the SQLite file")
    w = await wire(h, canary, echoes)
    await ingest(h, w, canary, 1)
    await settled(h, w, 4)
    # A rotation stores the secrets with their expiry: the sweep collects them in both shapes.
    rotated = await h.post(
        w.key, f"/api/v1/sources/{w.hmac_source}/secrets", {"expire_current_in_seconds": 600}
    )
    copy = tmp_path / "copy" / "interlink.sqlite"  # not *.db: the sweep's teardown skips it
    copy.parent.mkdir()
    with backup(tmp_path / "interlink.db", copy) as conn:
        conn.execute(
            "UPDATE attempts SET response_excerpt = 'x' || ? WHERE number = 1", [w.ok.secret]
        )
    sweep = Sweep()
    for key in h.system.secrets_keys:  # they are sealed: the sweep opens them with the key
        sweep.secrets_key(key)
    sweep.read_sqlite(copy)
    # Collected from the endpoints and sources tables.
    assert {w.ok.secret, w.hmac_secret, rotated["secret"], w.sw_secret} <= sweep.secrets.keys()
    leaks = sweep.leaks()
    assert leaks and all(leak.where.startswith("attempt record att_") for leak in leaks)
    assert {leak.secret.value for leak in leaks} == {w.ok.secret}


@contextlib.contextmanager
def backup(source: Path, to: Path) -> Iterator[sqlite3.Connection]:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(to)) as dst,
    ):
        src.backup(dst)
        yield dst
        dst.commit()
