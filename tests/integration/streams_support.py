"""What the stream tests share: a listening Interlink, SSE and WebSocket clients, appends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa
from tests.canary import RecordingTransport, Sweep
from tests.integration.conftest import settings_for

from interlink.app import ALL_ROLES, Interlink, Role, serve
from interlink.cli._sse import SseParser
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.storage.tables import events, sources
from interlink.storage.tenancy import system_scope


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    system: Interlink
    client: httpx.AsyncClient  # the management API, through the canary
    url: str
    task: asyncio.Task[None]
    stop: asyncio.Event

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def tenant(self, name: str) -> tuple[str, str]:
        """A tenant's key and one source of it."""
        admin = self.auth(self.system.settings.admin_key or "")
        made = await self.client.post("/api/v1/tenants", json={"name": name}, headers=admin)
        assert made.status_code == 201, made.text
        key = str(made.json()["api_key"])
        src = await self.client.post(
            "/api/v1/sources", json={"name": "pms"}, headers=self.auth(key)
        )
        assert src.status_code == 201, src.text
        return key, str(src.json()["source"]["id"])

    async def token(self, key: str, **body: Any) -> str:
        r = await self.client.post("/api/v1/stream-tokens", json=body, headers=self.auth(key))
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def append(
        self,
        source_id: str,
        specs: Sequence[tuple[str, str | None]],
        tenant_id: str | None = None,
        data: bytes = b'{"n": 1}',
    ) -> list[int]:
        """Appends events (type, key) of ``source_id`` to the log as ingest does; answers
        their positions."""
        tenant = tenant_id or await self.tenant_of(source_id)
        batch = [
            Event(
                id=new_id("event"),
                tenant_id=tenant,
                source_id=source_id,
                idempotency_key=uuid.uuid4().hex,
                type=t,
                key=k,
                received_at=time.time(),
                occurred_at=None,
                data=data,
                raw=b"{}",
                headers={},
            )
            for t, k in specs
        ]
        with system_scope("test: appends"):
            appended = await self.system.log_writer.append(batch)
            ids = [a.event_id for a in appended]
            async with self.system.db.read() as conn:
                rows = await conn.execute(
                    sa.select(events.c.id, events.c.seq).where(events.c.id.in_(ids))
                )
                seqs = {r.id: r.seq for r in rows}
        self.system.stream_hub.wake()
        return [int(seqs[i]) for i in ids]

    async def tenant_of(self, source_id: str) -> str:
        with system_scope("test: a source's tenant"):
            async with self.system.db.read() as conn:
                row = (
                    await conn.execute(
                        sa.select(sources.c.tenant_id).where(sources.c.id == source_id)
                    )
                ).one()
        return str(row.tenant_id)


@contextlib.asynccontextmanager
async def listening(
    tmp_path: Path,
    canary: Sweep,
    roles: frozenset[Role] = ALL_ROLES,
    **overrides: Any,
) -> AsyncIterator[Served]:
    settings = settings_for(tmp_path, host="127.0.0.1", port=free_port(), **overrides)
    canary.secret(settings.admin_key, "admin key (settings)")
    started: list[Interlink] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    async def on_started(system: Interlink) -> None:
        started.append(system)
        ready.set()

    task = asyncio.create_task(serve(settings, on_started=on_started, stop=stop, roles=roles))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), canary)
        url = settings.public_url
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=10) as client:
            served = Served(started[0], client, url, task, stop)
            yield served
            if not served.system.db.is_sqlite and not task.done():
                await canary.read_database(served.system.db)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 0
    ended: bool = False

    @property
    def positions(self) -> list[int]:
        return [int(e["seq"]) for e in self.events]

    @property
    def last(self) -> int | None:
        return self.positions[-1] if self.events else None


async def sse(
    url: str,
    received: Received,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    until: int | None = None,
) -> None:
    """Reads ``GET /api/v1/stream`` into ``received`` until the stream ends (or ``until``
    events arrived)."""
    parser = SseParser()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/api/v1/stream",
            headers=headers or {},
            params=params or {},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as response,
    ):
        received.status = response.status
        if response.status != 200:
            received.notices.append(("refused", await response.json()))
            return
        async for raw in response.content:
            message = parser.feed(raw.decode().rstrip("\r\n"))
            if message is None:
                continue
            data = json.loads(message.data)
            if message.event == "message":
                assert message.id == str(data["seq"])
                received.events.append(data)
                if until is not None and len(received.events) >= until:
                    return
            else:
                received.notices.append((message.event, data))
                if until == 0:  # only the stream's first word was wanted
                    return
    received.ended = True


async def ws(
    url: str,
    received: Received,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    until: int | None = None,
) -> None:
    """Reads ``/api/v1/ws`` into ``received`` the same way."""
    async with aiohttp.ClientSession() as session:
        try:
            socket_ = await session.ws_connect(
                f"{url}/api/v1/ws",
                headers=headers or {},
                params=params or {},
                heartbeat=None,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except aiohttp.WSServerHandshakeError as exc:
            received.status = exc.status
            return
        received.status = 101
        async with socket_:
            async for message in socket_:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                body = json.loads(message.data)
                if "id" in body:
                    assert body["id"] == body["data"]["seq"]
                    received.events.append(body["data"])
                    if until is not None and len(received.events) >= until:
                        return
                elif body["event"] != "interlink.heartbeat":
                    received.notices.append((body["event"], body["data"]))
                    if until == 0:
                        return
    received.ended = True


async def until(condition: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
