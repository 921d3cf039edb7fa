"""Shared fixtures of the end-to-end tests: ``interlink up`` as a real process, real receivers.

* :class:`InterlinkProcess` runs the ``interlink`` console script in a temporary working
  directory (so the embedded SQLite database lives there) on a free loopback port, and can
  SIGKILL and restart it on the same directory and port.
* :class:`Receiver` is an aiohttp server in the test process that verifies the signature of
  every request with the reference ``standardwebhooks`` package, counts requests per
  ``webhook-id`` and answers what the test programs it to.
* :class:`Api` is a thin client of the management API and of the ingest route.

When a test fails, the output of every Interlink process it started is attached to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tests.canary import Sweep

from .browser import OfflineBrowser, offline_browser

ADMIN_KEY = "ik_admin_e2e_" + "k" * 32
INTERLINK = Path(sys.executable).parent / "interlink"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 200

_PROCESSES = pytest.StashKey[list["InterlinkProcess"]]()


# waiting ------------------------------------------------------------------------------------------


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    progress: Callable[[], str] | None = None,
) -> None:
    """Polls ``condition`` until it holds; fails the test once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            detail = f" ({progress()})" if progress is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# the Interlink process ----------------------------------------------------------------------------


class InterlinkProcess:
    """``interlink up`` in ``workdir`` on ``port``; start, SIGKILL and restart it."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = ("up",),
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.admin_key = ADMIN_KEY
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
        env.update(
            {
                "INTERLINK_ADMIN_KEY": ADMIN_KEY,
                "INTERLINK_HOST": "127.0.0.1",
                "INTERLINK_PORT": str(port),
                "INTERLINK_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
                "INTERLINK_POLL_INTERVAL_SECONDS": "0.2",
                "INTERLINK_LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env or {})
        self.env = env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.workdir / f"interlink-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            # Output goes to a file, not a pipe: a pipe nobody reads would block the process.
            self.proc = subprocess.Popen(
                [str(INTERLINK), *self.args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest is not also delivered to it
            )

    async def start(self) -> None:
        self.spawn()
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    pytest.fail(
                        f"interlink exited with {self.proc.returncode} during start-up:\n"
                        + self.output()
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(
                        f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return
                if time.monotonic() >= deadline:
                    pytest.fail(f"interlink was not healthy within {timeout:g} s:\n{self.output()}")
                await asyncio.sleep(0.05)

    def sigkill(self) -> None:
        """Kills the process the hard way: no shutdown code of Interlink runs."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    async def restart(self) -> None:
        await self.start()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT; its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        return proc.returncode

    def log_lines(self, run: int) -> list[dict[str, Any]]:
        """The JSON log lines of the ``run``-th start (1-based); other output is skipped."""
        lines = []
        for text in self.logs[run - 1].read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict):
                    lines.append(line)
        return lines

    def output(self, tail: int = LOG_TAIL_LINES) -> str:
        parts = []
        for i, log in enumerate(self.logs, 1):
            text = log.read_text(errors="replace") if log.exists() else ""
            lines = text.splitlines()
            shown = "\n".join(lines[-tail:])
            cut = f" (last {tail} of {len(lines)} lines)" if len(lines) > tail else ""
            parts.append(f"--- interlink run {i}{cut} ---\n{shown}")
        return "\n".join(parts)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for process in item.stash.get(_PROCESSES, []):
            report.sections.append((f"interlink output ({report.when})", process.output()))
    return report


@pytest.fixture
async def interlink(
    request: pytest.FixtureRequest, tmp_path: Path, canary: Sweep
) -> AsyncIterator[InterlinkProcess]:
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    process = InterlinkProcess(workdir, free_port())
    request.node.stash.setdefault(_PROCESSES, []).append(process)
    try:
        await process.start()
        yield process
    finally:
        code = await asyncio.to_thread(process.stop)
        for log in process.logs:
            canary.read_log_file(log)
        # SIGTERM is the documented way to stop it: it shuts down cleanly and exits 0.
        assert code in (None, 0), f"interlink exited with {code} on SIGTERM:\n{process.output()}"


# receivers ----------------------------------------------------------------------------------------

# What a receiver answers: a status code, given the webhook-id and how many requests carrying it
# (this one included) have arrived.
Behaviour = Callable[[str, int], int]


def always(status: int) -> Behaviour:
    return lambda _id, _n: status


@dataclass
class Receiver:
    """An aiohttp server that checks every request with the reference Standard Webhooks code."""

    name: str
    port: int = 0
    secret: str | None = None
    behaviour: Behaviour = field(default=lambda _id, _n: 200)
    delay: float = 0.0  # seconds to take over each answer
    counts: Counter[str] = field(default_factory=Counter)
    answered: list[tuple[str, int]] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    bodies: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    active: int = 0  # requests being answered right now

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{self.name}"

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.active += 1
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        webhook_id = request.headers.get("webhook-id", "")
        if self.secret is None:
            self.bad_signatures.append(f"{webhook_id}: no secret configured yet")
            return web.Response(status=401)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            self.bad_signatures.append(f"{webhook_id}: {exc!r}")
            return web.Response(status=401)
        self.counts[webhook_id] += 1
        self.bodies[webhook_id] = payload
        status = self.behaviour(webhook_id, self.counts[webhook_id])
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answered.append((webhook_id, status))
        return web.Response(status=status, text="ok" if status < 300 else "nope")


class Receivers:
    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def start(self, name: str, behaviour: Behaviour | None = None) -> Receiver:
        receiver = Receiver(name)
        if behaviour is not None:
            receiver.behaviour = behaviour
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(f"/hooks/{name}", receiver.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        receiver.port = int(runner.addresses[0][1])
        return receiver

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    servers = Receivers()
    try:
        yield servers
    finally:
        await servers.close()


# API and ingest client ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any  # parsed JSON, or the text when it is not JSON

    def problem_detail(self) -> str:
        """The problem+json ``detail``; fails the test unless this reply is a problem."""
        assert self.content_type == "application/problem+json", (
            f"not a problem+json reply ({self.content_type}): {self.body!r}"
        )
        assert isinstance(self.body, dict), self.body
        assert self.body.get("status") == self.status, self.body
        detail = self.body.get("detail")
        assert isinstance(detail, str) and detail.strip(), f"no detail: {self.body!r}"
        return detail


@dataclass
class Tenant:
    id: str
    key: str


@dataclass
class Source:
    id: str
    ingest_url: str
    secret: str
    raw: dict[str, Any]


@dataclass
class Endpoint:
    id: str
    secret: str
    raw: dict[str, Any]
    subscription_id: str | None = None


def signed_headers(
    secret: str, webhook_id: str, body: bytes, at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed by the reference implementation."""
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def _bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    return data.encode() if isinstance(data, str) else b""


class Api:
    def __init__(
        self, session: aiohttp.ClientSession, process: InterlinkProcess, canary: Sweep
    ) -> None:
        self.session = session
        self.process = process
        self.canary = canary

    @property
    def base_url(self) -> str:
        return self.process.base_url

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        async with self.session.request(
            method,
            f"{self.base_url}{path}",
            json=json,
            data=data,
            headers=sent,
            params=params,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            text = await response.text()
            self.canary.exchange(
                method,
                path,
                sent,
                msgspec.json.encode(json) if json is not None else _bytes(data),
                response.status,
                response.headers.items(),
                text.encode(),
            )
            ctype = response.content_type
            body: Any = text
            if ctype in ("application/json", "application/problem+json") and text:
                body = await response.json(content_type=None)
            return Reply(response.status, ctype, body)

    async def ok(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        reply = await self.request(method, path, **kwargs)
        assert reply.status == expect, f"{method} {path}: {reply.status} {reply.body!r}"
        return reply.body

    # configuration

    async def tenant(self, name: str) -> Tenant:
        body = await self.ok(
            "POST", "/api/v1/tenants", key=ADMIN_KEY, json={"name": name}, expect=201
        )
        return Tenant(body["tenant"]["id"], body["api_key"])

    async def source(self, tenant: Tenant, name: str = "partner", **extra: Any) -> Source:
        body = await self.ok(
            "POST", "/api/v1/sources", key=tenant.key, json={"name": name, **extra}, expect=201
        )
        return Source(body["source"]["id"], body["source"]["ingest_url"], body["secrets"][0], body)

    async def endpoint(
        self,
        tenant: Tenant,
        receiver: Receiver,
        *,
        subscribe: list[str] | None = None,
        **extra: Any,
    ) -> Endpoint:
        body = await self.ok(
            "POST",
            "/api/v1/endpoints",
            key=tenant.key,
            json={"url": receiver.url, **extra},
            expect=201,
        )
        receiver.secret = body["secret"]
        endpoint = Endpoint(body["endpoint"]["id"], body["secret"], body["endpoint"])
        if subscribe is not None:
            sub = await self.ok(
                "POST",
                "/api/v1/subscriptions",
                key=tenant.key,
                json={"endpoint_id": endpoint.id, "event_types": subscribe},
                expect=201,
            )
            endpoint.subscription_id = sub["id"]
        return endpoint

    # traffic

    async def list_all(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list resource, following the cursor."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 500, **params}
        while True:
            page = await self.ok("GET", path, key=key, params=query)
            items.extend(page["data"])
            if not page["next_cursor"]:
                return items
            query["cursor"] = page["next_cursor"]

    async def deliveries(self, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
        return await self.list_all("/api/v1/deliveries", tenant.key, **params)

    async def events(self, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
        return await self.list_all("/api/v1/events", tenant.key, **params)

    async def attempts(self, tenant: Tenant, delivery_id: str) -> list[dict[str, Any]]:
        body = await self.ok("GET", f"/api/v1/deliveries/{delivery_id}/attempts", key=tenant.key)
        return list(body["data"])

    async def unsettled(self, tenant: Tenant) -> int:
        """How many deliveries may still be sent (pending, in flight or scheduled)."""
        total = 0
        for status in ("pending", "in_flight", "scheduled"):
            total += len(await self.deliveries(tenant, status=status))
        return total

    async def ingest(
        self,
        source: Source,
        webhook_id: str,
        body: bytes,
        *,
        at: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Sends one webhook to ``source``, freshly signed with its secret."""
        sent = signed_headers(source.secret, webhook_id, body, at)
        sent.update(headers or {})
        return await self.request("POST", f"/in/{source.id}", data=body, headers=sent)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=200, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
def api(http: aiohttp.ClientSession, interlink: InterlinkProcess, canary: Sweep) -> Api:
    return Api(http, interlink, canary)


# browser ------------------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[OfflineBrowser]:
    """Headless Chromium that reaches loopback only (tests/e2e/browser.py)."""
    async for offline in offline_browser():
        yield offline
