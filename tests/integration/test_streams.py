"""Realtime streams over a listening Interlink (SQLite, or PostgreSQL with
INTERLINK_TEST_BACKEND=postgres): filters, tenant isolation, resume across the seam, tokens,
a client that falls behind, shutdown with streams open."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.canary import Sweep
from tests.integration.conftest import database_backend
from tests.integration.streams_support import Received, listening, sse, until, ws
from typer.testing import CliRunner

from interlink import cli
from interlink.app import Role
from interlink.storage.tables import events
from interlink.storage.tenancy import system_scope

BOOKING, PAYMENT, LISTING = "booking.created", "payment.succeeded", "listing.updated"
PADDED = b'{"pad": "' + b"x" * 4000 + b'"}'


async def test_filters_and_tenant_isolation_on_sse_and_websocket(
    tmp_path: Path, canary: Sweep
) -> None:
    async with listening(tmp_path, canary) as s:
        key_a, src_a = await s.tenant("a")
        key_b, src_b = await s.tenant("b")
        _, src_a2 = await s.tenant("a2")  # another tenant's source id, asked for by A
        every_a, every_b = Received(), Received()
        typed, by_source, by_key, foreign_source = Received(), Received(), Received(), Received()
        clients = [
            sse(s.url, every_a, headers=s.auth(key_a)),
            ws(s.url, every_b, headers=s.auth(key_b)),
            sse(s.url, typed, headers=s.auth(key_a), params={"types": "booking.*,payment.*"}),
            ws(s.url, by_source, headers=s.auth(key_a), params={"source": src_a}),
            sse(s.url, by_key, headers=s.auth(key_a), params={"key": "k1,k2"}),
            ws(s.url, foreign_source, headers=s.auth(key_a), params={"source": src_b}),
        ]
        tasks = [asyncio.create_task(c) for c in clients]
        await until(lambda: s.system.stream_hub.connections == 6, what="6 connections")
        a = await s.append(src_a, [(BOOKING, "k1"), (LISTING, "k2"), (PAYMENT, "k3")] * 20)
        b = await s.append(src_b, [(BOOKING, "k1"), (PAYMENT, "k2")] * 30)
        await until(lambda: len(every_a.events) == 60 and len(every_b.events) == 60)
        await until(lambda: len(typed.events) == 40 and len(by_key.events) == 40)
        await until(lambda: len(by_source.events) == 60)
        await asyncio.sleep(0.5)  # anything foreign would have arrived by now
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert every_a.positions == a and every_b.positions == b  # in log order, each once
    assert {e["source_id"] for e in every_a.events} == {src_a}
    assert {e["source_id"] for e in every_b.events} == {src_b}
    assert {e["type"] for e in typed.events} == {BOOKING, PAYMENT}
    assert {e["key"] for e in by_key.events} == {"k1", "k2"}
    assert by_source.positions == a
    # A filter naming another tenant's source never opens a way to its events.
    assert foreign_source.events == [] and src_a2 != src_b


TOTAL = 600


async def test_resume_across_the_seam_exactly_once(tmp_path: Path, canary: Sweep) -> None:
    """Clients dropped at every few events reconnect with their last id while events keep
    being appended: every event arrives exactly once, in order, over SSE and WebSocket."""
    async with listening(tmp_path, canary) as s:
        key, src = await s.tenant("a")
        expected: list[int] = []
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set() and n < TOTAL:
                expected.extend(await s.append(src, [(BOOKING, f"k{n % 7}")] * 5))
                n += 5
                await asyncio.sleep(0.005)

        async def client(transport: str, drop_every: int) -> list[int]:
            got: list[int] = []
            last: int | None = 0
            while len(got) < TOTAL:
                received = Received()
                n = min(drop_every, TOTAL - len(got))
                if transport == "sse":
                    headers = s.auth(key) | {"Last-Event-ID": str(last)}
                    await sse(s.url, received, headers=headers, until=n)
                else:
                    params = {"from": str(last)}
                    await ws(s.url, received, headers=s.auth(key), params=params, until=n)
                got.extend(received.positions)
                last = got[-1] if got else last
            return got

        producing = asyncio.create_task(writer())
        results = await asyncio.wait_for(
            asyncio.gather(*(client(t, d) for t in ("sse", "ws") for d in (7, 23, 61))), 120
        )
        stop.set()
        await producing
    for got in results:
        assert got == expected, "a gap, a duplicate or a reordering at a seam"
        assert len(got) == TOTAL


async def test_history_no_longer_kept_and_positions_ahead_restart_clearly(
    tmp_path: Path, canary: Sweep
) -> None:
    async with listening(tmp_path, canary) as s:
        key, src = await s.tenant("a")
        first = await s.append(src, [(BOOKING, None)] * 10)
        # Retention took the oldest five (as maintenance does: the prefix of the log).
        with system_scope("test: retention"):
            async with s.system.db.write() as conn:
                await conn.execute(sa.delete(events).where(events.c.seq <= first[4]))
        old, ahead = Received(), Received()
        await sse(s.url, old, headers=s.auth(key) | {"Last-Event-ID": "0"}, until=5)
        await sse(s.url, ahead, headers=s.auth(key), params={"from": "999999"}, until=0)
        await until(lambda: s.system.stream_hub.connections == 0)
        late = Received()
        reading = asyncio.create_task(
            ws(s.url, late, headers=s.auth(key), params={"from": "999999"}, until=1)
        )
        await until(lambda: len(late.notices) == 1)
        more = await s.append(src, [(PAYMENT, None)])
        await asyncio.wait_for(reading, 10)
    assert old.positions == first[5:]
    (name, notice), *_ = old.notices
    assert name == "interlink.restart" and notice["restart_after"] == first[5] - 1
    assert "no longer kept" in notice["detail"]
    assert ahead.notices[0][0] == "interlink.restart"
    assert "beyond the newest" in ahead.notices[0][1]["detail"]
    assert late.positions == more  # resumed from the head, not from a position never reached


async def test_stream_tokens_are_scoped_and_refused_clearly(tmp_path: Path, canary: Sweep) -> None:
    async with listening(tmp_path, canary) as s:
        key_a, src_a = await s.tenant("a")
        key_b, _ = await s.tenant("b")
        token = await s.token(key_a, types=["booking.*"])
        short = await s.token(key_a, expires_in=1)
        by_token = Received()
        reading = asyncio.create_task(sse(s.url, by_token, params={"token": token}, until=2))
        await until(lambda: s.system.stream_hub.connections == 1)
        await s.append(src_a, [(PAYMENT, None), (BOOKING, None), (BOOKING, None)])
        await asyncio.wait_for(reading, 10)
        assert [e["type"] for e in by_token.events] == [BOOKING, BOOKING]

        forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        refusals = {
            "no credential": ({}, {}),
            "forged token": ({}, {"token": forged}),
            "not a token": ({}, {"token": "ik_stream_" + "x" * 40}),
            "bad key": (s.auth("ik_" + "n" * 40), {}),
            "another tenant's token": (s.auth(key_b), {"token": token}),
            "widened filter": ({}, {"token": token, "types": "payment.*"}),
            "admin key": (s.auth(s.system.settings.admin_key or ""), {}),
        }
        await asyncio.sleep(1.1)
        refusals["expired token"] = ({}, {"token": short})
        answers: dict[str, tuple[int, int, str]] = {}
        for name, (headers, params) in refusals.items():
            over_sse, over_ws = Received(), Received()
            await sse(s.url, over_sse, headers=headers, params=params)
            await ws(s.url, over_ws, headers=headers, params=params)
            detail = over_sse.notices[0][1]["detail"] if over_sse.notices else ""
            answers[name] = (over_sse.status, over_ws.status, detail)
        bad_pattern = await s.client.post(
            "/api/v1/stream-tokens", json={"types": ["booking..x"]}, headers=s.auth(key_a)
        )
        admin_mint = await s.client.post(
            "/api/v1/stream-tokens", json={}, headers=s.auth(s.system.settings.admin_key or "")
        )
    unauthorized = {"no credential", "forged token", "not a token", "bad key", "expired token"}
    for name, (over_sse, over_ws, detail) in answers.items():
        status = 401 if name in unauthorized else 403
        assert (over_sse, over_ws) == (status, status), (name, answers[name])
        assert detail, name
    assert "expired" in answers["expired token"][2]
    assert "another tenant" in answers["another tenant's token"][2]
    assert bad_pattern.status_code == 422 and admin_mint.status_code == 403
    # The tokens are secrets to the canary sweep (a token field of a creation answer): no log
    # line of this test holds one.


async def test_a_client_that_stops_reading_is_disconnected_and_hurts_nobody(
    tmp_path: Path, canary: Sweep
) -> None:
    async with listening(tmp_path, canary, stream_queue_size=50) as s:
        key, src = await s.tenant("a")
        # A raw client that sends its request and never reads a byte of the answer.
        loop = asyncio.get_running_loop()
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        host, port = s.system.settings.host, s.system.settings.port
        await loop.sock_connect(stalled, (host, port))
        request = f"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
        await loop.sock_sendall(stalled, request.encode())
        healthy = Received()
        reading = asyncio.create_task(sse(s.url, healthy, headers=s.auth(key), until=3000))
        await until(lambda: s.system.stream_hub.connections == 2)
        appended: list[int] = []
        started = time.monotonic()
        for _ in range(30):  # 3,000 events of 4 KB: more than the socket buffers between
            appended += await s.append(src, [(BOOKING, None)] * 100, data=PADDED)
        await until(lambda: s.system.stream_hub.connections == 1, what="the stalled client cut")
        cut_after = time.monotonic() - started
        await asyncio.wait_for(reading, 30)
        stalled.close()
        await until(lambda: s.system.stream_hub.connections == 0)
        metrics = (await s.client.get("/metrics")).text
    assert healthy.positions == appended
    assert cut_after < 20  # a wide bound: it is cut once its queue overflows, not at a timeout
    closed = [json.loads(line) for line in canary.log_lines() if "streams.closed" in line]
    assert any(c["reason"] == "overflow" for c in closed), closed
    # Counted for /metrics too: the overflow, and no stream left open.
    assert 'interlink_streams_closed_total{reason="overflow",transport="sse"} 1.0' in metrics
    assert 'interlink_stream_connections{transport="sse"} 0.0' in metrics


async def test_shutdown_with_streams_open_ends_well_before_the_deadline(
    tmp_path: Path, canary: Sweep
) -> None:
    sse_client, ws_client = Received(), Received()
    async with listening(tmp_path, canary, http_shutdown_timeout_seconds=30) as s:
        key, _ = await s.tenant("a")
        tasks = [
            asyncio.create_task(sse(s.url, sse_client, headers=s.auth(key))),
            asyncio.create_task(ws(s.url, ws_client, headers=s.auth(key))),
        ]
        await until(lambda: s.system.stream_hub.connections == 2)
        started = time.monotonic()
        s.stop.set()
        await asyncio.wait_for(s.task, 30)
        took = time.monotonic() - started
        await asyncio.gather(*tasks)
    assert took < 10, f"shutdown took {took:.1f} s with two streams open (deadline 30 s)"
    for client in (sse_client, ws_client):
        assert client.ended
        assert [name for name, _ in client.notices] == ["interlink.shutdown"]
        assert "resume_from" in client.notices[0][1]


async def test_cli_tail_prints_the_stream_and_resumes_after_a_position(
    tmp_path: Path, canary: Sweep
) -> None:
    async with listening(tmp_path, canary) as s:
        key, src = await s.tenant("a")
        first = await s.append(src, [(BOOKING, "k1"), (PAYMENT, "k2"), (BOOKING, "k3")])
        env = {"INTERLINK_API_URL": s.url, "INTERLINK_API_KEY": key}
        args = ["events", "tail", "--from", str(first[0]), "--types", "booking.*", "--count", "2"]
        # In a thread: the CLI's client blocks, and the server answers on this loop.
        running = asyncio.create_task(asyncio.to_thread(CliRunner().invoke, cli.app, args, env=env))
        await until(lambda: s.system.stream_hub.connections == 1)
        later = await s.append(src, [(BOOKING, "k4")])
        result = await asyncio.wait_for(running, 20)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [str(first[2]), str(later[0])]
    assert "key=k3" in lines[0] and "key=k4" in lines[1]


async def test_an_api_process_streams_what_another_process_appends(
    tmp_path: Path, canary: Sweep
) -> None:
    """PostgreSQL: a client of an `api`-role process sees the events another process appends
    (woken by NOTIFY, read from the database), on both transports."""
    if database_backend() != "postgres":
        pytest.skip("several processes on one database need PostgreSQL")
    api_only = frozenset({Role.API})
    pipeline = frozenset(Role) - api_only
    async with (
        listening(tmp_path, canary, roles=pipeline) as writer,
        listening(tmp_path, canary, roles=api_only) as reader,
    ):
        key, src = await reader.tenant("a")
        over_sse, over_ws = Received(), Received()
        tasks = [
            asyncio.create_task(sse(reader.url, over_sse, headers=reader.auth(key), until=50)),
            asyncio.create_task(ws(reader.url, over_ws, headers=reader.auth(key), until=50)),
        ]
        await until(lambda: reader.system.stream_hub.connections == 2)
        appended: list[int] = []
        for _ in range(10):
            appended += await writer.append(src, [(BOOKING, None)] * 5)
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert over_sse.positions == appended and over_ws.positions == appended
