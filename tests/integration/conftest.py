"""In-process fixtures: a real Interlink (SQLite file, workers running) behind an ASGI client,
and real receivers on loopback.

``INTERLINK_TEST_BACKEND=postgres`` (opt-in; needs ``INTERLINK_TEST_POSTGRES_URL``, see
tests/conftest.py) builds the settings on a fresh PostgreSQL database per test instead, as in
production: migrated by the schema's owner, served as the application role that row-level
security binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from aiohttp import web
from standardwebhooks.webhooks import Webhook
from tests.canary import RecordingTransport, Sweep
from tests.conftest import app_url
from typer.testing import CliRunner

from interlink import cli, config
from interlink.app import Interlink, serve
from interlink.storage.secrets_box import SecretBox

ADMIN = "test-admin-key"
TEST_KEY = SecretBox.new_key()  # the secrets key of PostgreSQL tests (SQLite: a key file)


@dataclass
class Receiver:
    """A loopback receiver that verifies every signature with the `standardwebhooks` package."""

    secret: str = ""
    answers: list[int] = field(default_factory=list)  # consumed per request; then `default`
    default: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(self.secret).verify(body, dict(request.headers))
        self.received.append((request.headers["webhook-id"], payload))
        status = self.answers.pop(0) if self.answers else self.default
        return web.Response(status=status, headers=self.headers if status >= 300 else None)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Any]]:
    made: list[Receiver] = []

    async def make(**kwargs: Any) -> Receiver:
        r = Receiver(**kwargs)
        await r.start()
        made.append(r)
        return r

    yield make
    for r in made:
        await r.stop()


BACKEND_ENV = "INTERLINK_TEST_BACKEND"
# The fresh PostgreSQL database of the running test, set by `_backend_database`.
_DATABASE_URL_ENV = "INTERLINK_TEST_DATABASE_URL"


def database_backend() -> str:
    backend = os.environ.get(BACKEND_ENV, "").strip().lower() or "sqlite"
    if backend not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"{BACKEND_ENV}={backend!r}: 'sqlite' (default) or 'postgres'")
    return backend


@pytest.fixture(autouse=True)
def _backend_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the PostgreSQL backend, a fresh database for the test (dropped after it), which
    `settings_for` then uses."""
    if database_backend() == "postgres":
        monkeypatch.setenv(_DATABASE_URL_ENV, request.getfixturevalue("postgres_database"))


def _database_urls(tmp_path: Path) -> dict[str, Any]:
    if database_backend() == "sqlite":
        return {"database_url": f"sqlite:///{tmp_path}/interlink.db"}
    url = os.environ.get(_DATABASE_URL_ENV)
    if not url:
        raise RuntimeError(f"{BACKEND_ENV}=postgres: no test database here (tests/integration)")
    # PostgreSQL has no default secrets key: Interlink refuses to start without one.
    return {"database_url": app_url(url), "migration_database_url": url, "secrets_key": [TEST_KEY]}


def settings_for(tmp_path: Path, **overrides: Any) -> config.Settings:
    values: dict[str, Any] = {
        **_database_urls(tmp_path),
        "admin_key": ADMIN,
        "outbound_allow_networks": ["127.0.0.0/8", "::1/128"],
        "poll_interval_seconds": 0.2,
    }
    values.update(overrides)
    return config.load(path=str(tmp_path / "none.toml"), env={}, **values)


@dataclass
class Harness:
    system: Interlink
    client: httpx.AsyncClient

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def tenant(self, name: str = "acme") -> str:
        r = await self.client.post("/api/v1/tenants", json={"name": name}, headers=self.auth(ADMIN))
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"])

    async def post(self, key: str, path: str, body: Any) -> dict[str, Any]:
        r = await self.client.post(path, json=body, headers=self.auth(key))
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def get(self, key: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(key))


def client_for(system: Interlink, canary: Sweep) -> httpx.AsyncClient:
    """A client of ``system`` in-process; the canary sweep sees every exchange."""
    transport = RecordingTransport(httpx.ASGITransport(app=system), canary)
    return httpx.AsyncClient(transport=transport, base_url="http://interlink")


@contextlib.asynccontextmanager
async def running(settings: config.Settings, canary: Sweep) -> AsyncIterator[Harness]:
    canary.secret(settings.admin_key, "admin key (settings)")
    canary.secret(settings.metrics_token, "metrics token (settings)")
    system = Interlink(settings)
    for key in system.secrets_keys:
        canary.secrets_key(key)
    await system.start()
    try:
        async with client_for(system, canary) as client:
            yield Harness(system, client)
        if not system.db.is_sqlite:  # the sweep reads SQLite files itself, after the test
            await canary.read_database(system.db)
    finally:
        await system.stop()


@contextlib.asynccontextmanager
async def serving(settings: config.Settings) -> AsyncIterator[Interlink]:
    """``serve`` as ``interlink up`` runs it (HTTP listener included), until the block ends."""
    started: list[Interlink] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    async def on_started(system: Interlink) -> None:
        started.append(system)
        ready.set()

    task = asyncio.create_task(serve(settings, on_started=on_started, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield started[0]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep
) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)
    async with running(settings_for(tmp_path), canary) as harness:
        yield harness


def signed(
    secret: str, msg_id: str, payload: Any, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode("utf-8", "replace"))
    return body, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


# A real server on loopback, for the CLI (which talks HTTP) ------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def quiet_server() -> Iterator[None]:
    """The server's log lines to the real stderr: not into the CLI's captured output."""
    before = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stderr__))
    yield
    structlog.configure(**before)


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_server: None
) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)
    settings = settings_for(tmp_path, port=free_port())
    started: asyncio.Future[Interlink] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def on_started(system: Interlink) -> None:
        started.set_result(system)

    task = asyncio.create_task(serve(settings, on_started=on_started, stop=stop))
    system = await asyncio.wait_for(started, 30)
    async with httpx.AsyncClient(base_url=settings.public_url) as client:
        yield Harness(system, client)
    stop.set()
    await asyncio.wait_for(task, 30)


async def invoke(h: Harness, key: str, *args: str) -> Any:
    env = {"INTERLINK_API_URL": str(h.client.base_url), "INTERLINK_API_KEY": key}
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=env)
