"""What one HTTP client may hold, over raw sockets against ``interlink up``.

The limits are configured short here (seconds, not the defaults' tens) so the tests run fast;
each assertion allows a wide margin over its limit for a loaded machine, and prints the times
measured.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.canary import Sweep

from .conftest import _PROCESSES, Api, InterlinkProcess, Source, free_port, signed_headers

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SHUTDOWN_TIMEOUT = 2.0
MARGIN = 5.0  # seconds over a limit a loaded machine may need to act on it


@pytest.fixture
async def limited(
    request: pytest.FixtureRequest, tmp_path: Path, canary: Sweep
) -> AsyncIterator[InterlinkProcess]:
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    process = InterlinkProcess(
        workdir,
        free_port(),
        {
            "INTERLINK_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "INTERLINK_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "INTERLINK_HTTP_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT),
        },
    )
    request.node.stash.setdefault(_PROCESSES, []).append(process)
    try:
        await process.start()
        yield process
    finally:
        await asyncio.to_thread(process.stop)
        for log in process.logs:
            canary.read_log_file(log)


@pytest.fixture
async def limited_api(limited: InterlinkProcess, canary: Sweep) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, limited, canary)


async def _source(api: Api) -> tuple[Source, str]:
    tenant = await api.tenant("limits")
    return await api.source(tenant), tenant.key


async def _read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    """What the server sent before closing; fails if it has not closed within ``limit``."""
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            data += chunk
    return data


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


async def test_slowloris_connections_are_closed_within_the_header_timeout(
    limited: InterlinkProcess,
) -> None:
    async def slow_client() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", limited.port)
        opened = time.monotonic()
        request = b"POST /in/src_x HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 1000

        async def drip() -> None:
            for byte in request:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(drip())
        try:
            reply = await _read_until_closed(reader, HEADER_TIMEOUT + MARGIN)
        finally:
            dripping.cancel()
            writer.close()
        assert _status(reply) == 408, reply[:200]
        return time.monotonic() - opened

    times = await asyncio.gather(*(slow_client() for _ in range(200)))
    print(f"\n200 slowloris connections closed after {min(times):.2f}-{max(times):.2f} s")
    assert max(times) < HEADER_TIMEOUT + MARGIN
    # The server still answers once they are gone.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{limited.base_url}/healthz") as response,
    ):
        assert response.status == 200


async def _partial_request(api: Api, source: Source, head: bytes, sent: bytes) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.process.port)
    started = time.monotonic()
    writer.write(head + sent)
    try:
        reply = await _read_until_closed(reader, BODY_TIMEOUT + MARGIN)
    finally:
        writer.close()
    return _status(reply), time.monotonic() - started


def _head(source: Source, body: bytes, framing: bytes) -> bytes:
    headers = signed_headers(source.secret, "msg_partial", body)
    lines = [f"POST /in/{source.id} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines).encode() + b"\r\n" + framing + b"\r\n"


async def test_a_body_shorter_than_declared_is_cut_off_within_the_body_timeout(
    limited_api: Api,
) -> None:
    source, key = await _source(limited_api)
    body = json.dumps({"type": "order.created", "data": {"n": 1}}).encode()
    cases = {
        "content-length": (_head(source, body, b"content-length: %d\r\n" % len(body)), body[:10]),
        "chunked": (
            _head(source, body, b"transfer-encoding: chunked\r\n"),
            b"%x\r\n%s\r\n" % (len(body), body[:10]),  # declares the whole body, sends 10 bytes
        ),
    }
    for name, (head, sent) in cases.items():
        status, seconds = await _partial_request(limited_api, source, head, sent)
        print(f"\n{name}: {status} after {seconds:.2f} s")
        assert status == 408, name
        assert seconds < BODY_TIMEOUT + MARGIN, name
    assert await limited_api.list_all("/api/v1/events", key) == []


async def test_oversized_headers_get_431_and_nothing_is_stored(limited_api: Api) -> None:
    source, key = await _source(limited_api)
    body = json.dumps({"type": "order.created", "data": {"n": 1}}).encode()
    cases = {
        "one 1 MiB header": b"x-big: " + b"a" * (1024 * 1024) + b"\r\n",
        "10,000 headers": b"".join(b"x-h%d: v\r\n" % i for i in range(10_000)),
    }
    for name, extra in cases.items():
        head = _head(source, body, extra + b"content-length: %d\r\n" % len(body))
        reader, writer = await asyncio.open_connection("127.0.0.1", limited_api.process.port)
        writer.write(head + body)
        try:
            reply = await _read_until_closed(reader, MARGIN)
        finally:
            writer.close()
        status_line = reply.split(b"\r\n", 1)[0]
        print(f"\n{name}: {status_line!r}")
        assert _status(reply) == 431, reply[:300]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["status"] == 431
    assert await limited_api.list_all("/api/v1/events", key) == []


async def test_sigterm_stops_the_server_within_its_deadline_despite_a_half_sent_request(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    process = InterlinkProcess(
        workdir,
        free_port(),
        {
            # The body timeout is long: what ends the request here is the shutdown deadline.
            "INTERLINK_HTTP_BODY_TIMEOUT_SECONDS": "120",
            "INTERLINK_HTTP_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT),
        },
    )
    request.node.stash.setdefault(_PROCESSES, []).append(process)
    await process.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        writer.write(
            b"POST /api/v1/tenants HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + process.admin_key.encode() + b"\r\n"
            b"content-length: 1000\r\n\r\n" + b'{"name": "half'
        )
        await writer.drain()
        await asyncio.sleep(1.0)  # the request is being handled: the API awaits its body
        assert process.proc is not None
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.proc.wait, SHUTDOWN_TIMEOUT + 2 * MARGIN)
        seconds = time.monotonic() - started
        print(f"\nexited {code} {seconds:.2f} s after SIGTERM (deadline {SHUTDOWN_TIMEOUT} s)")
        assert code == 0
        assert seconds < SHUTDOWN_TIMEOUT + MARGIN
        # The client's connection ended too: no byte of it outlives the process.
        assert await asyncio.wait_for(reader.read(), MARGIN) is not None
        writer.close()
    finally:
        await asyncio.to_thread(process.stop)


async def test_connections_over_the_bound_get_503_and_are_closed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    bound = 20
    process = InterlinkProcess(workdir, free_port(), {"INTERLINK_HTTP_MAX_CONNECTIONS": str(bound)})
    request.node.stash.setdefault(_PROCESSES, []).append(process)
    await process.start()
    opened: list[asyncio.StreamWriter] = []
    try:
        for _ in range(bound):
            opened.append((await asyncio.open_connection("127.0.0.1", process.port))[1])
        await asyncio.sleep(0.5)  # the server has accepted them all
        extra = [await asyncio.open_connection("127.0.0.1", process.port) for _ in range(5)]
        replies = [await _read_until_closed(reader, MARGIN) for reader, _ in extra]
        assert [_status(reply) for reply in replies] == [503] * 5, replies
        assert all(b"retry-after: 1" in reply for reply in replies)
        for _, writer in extra:
            writer.close()
        # Once the held ones go, new connections are served again.
        for writer in opened:
            writer.close()
        opened.clear()
        await process.wait_healthy(timeout=MARGIN)
    finally:
        for writer in opened:
            writer.close()
        await asyncio.to_thread(process.stop)
