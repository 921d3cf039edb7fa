"""Stream clients for bench/streams.py, cheap enough to run a thousand of them.

A Python client that parses every message with aiohttp and ``json.loads`` costs more CPU than the
server spends sending it, so the bench would measure itself. These are bare asyncio protocols:
the SSE one decodes the chunked body and splits frames, the WebSocket one reads the server's
(unmasked) frames; each takes the position from the message's ``id`` and the sent time from the
event's data (``{"n": .., "sent": <epoch seconds>}``, written by the appender), and keeps a tally:
how many, whether in strictly increasing order, a digest of the positions (so clients can be
compared without shipping every position), and a latency histogram in 1 ms bins.

``run_worker`` is one client process: it connects its share of the clients, says so, waits for
the go, and reports its tallies once every client has what it expects (or at the deadline).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode

BINS = 60_000  # 1 ms bins up to a minute; later arrivals land in the last
_SENT = b'"sent":'


@dataclass
class Tally:
    kind: str
    expect_types: str | None
    count: int = 0
    out_of_order: int = 0
    last: int = 0
    digest: int = 0
    notices: list[bytes] = field(default_factory=list)
    closed: bool = False
    connected: bool = False
    status: int = 0

    def got(self, seq: int, sent: float, now: float, hist: list[int]) -> None:
        if seq <= self.last:
            self.out_of_order += 1
        self.last = seq
        self.count += 1
        self.digest = (self.digest * 1_000_003 + seq) & 0xFFFFFFFFFFFF
        ms = int((now - sent) * 1000)
        hist[min(max(ms, 0), BINS - 1)] += 1


def _sent_of(message: bytes) -> float:
    at = message.rfind(_SENT)
    return float(message[at + len(_SENT) : message.index(b"}", at)])


class _Base(asyncio.Protocol):
    def __init__(self, request: bytes, tally: Tally, hist: list[int]) -> None:
        self.request, self.tally, self.hist = request, tally, hist
        self.buf = bytearray()
        self.head = False
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed = True
        if not self.ready.done():
            self.ready.set_result(0)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.head:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.tally.status = int(self.buf[9:12])
            del self.buf[: end + 4]
            self.head = True
            self.ready.set_result(self.tally.status)
        self.body(time.time())

    def body(self, now: float) -> None:
        raise NotImplementedError


class SseClient(_Base):
    def __init__(self, request: bytes, tally: Tally, hist: list[int]) -> None:
        super().__init__(request, tally, hist)
        self.text = bytearray()

    def body(self, now: float) -> None:
        buf = self.buf
        while True:  # chunked transfer coding: "<hex size>\r\n<data>\r\n"
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size = int(buf[:eol], 16)
            if len(buf) < eol + 4 + size:
                break
            self.text += buf[eol + 2 : eol + 2 + size]
            del buf[: eol + 4 + size]
        frames = self.text.split(b"\n\n")
        self.text = bytearray(frames.pop())
        for frame in frames:
            if frame.startswith(b"id: "):
                nl = frame.index(b"\n")
                self.tally.got(int(frame[4:nl]), _sent_of(frame), now, self.hist)
            elif frame.startswith(b"event: "):
                self.tally.notices.append(bytes(frame))


class WsClient(_Base):
    def body(self, now: float) -> None:
        buf = self.buf
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            if opcode == 1 and payload.startswith(b'{"id":'):
                seq = int(payload[6 : payload.index(b",")])
                self.tally.got(seq, _sent_of(payload), now, self.hist)
            elif opcode == 1:
                if not payload.startswith(b'{"event":"interlink.heartbeat"'):
                    self.tally.notices.append(payload)
            elif opcode == 9 and self.transport is not None:  # ping: pong, masked by zeros
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)


def request(kind: str, host: str, port: int, key: str, params: dict[str, str]) -> bytes:
    query = ("?" + urlencode(params)) if params else ""
    if kind == "sse":
        path, extra = "/api/v1/stream", ""
    else:
        path = "/api/v1/ws"
        extra = (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: " + "dGhlIHNhbXBsZSBub25jZQ==\r\n"
        )
    return (
        f"GET {path}{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\n{extra}\r\n"
    ).encode()


@dataclass(frozen=True)
class WorkerSpec:
    host: str
    port: int
    key: str
    clients: list[tuple[str, str | None]]  # (sse|ws, types filter or None)


async def connect(spec: WorkerSpec, hist: list[int]) -> list[tuple[Tally, _Base]]:
    loop = asyncio.get_running_loop()
    made: list[tuple[Tally, _Base]] = []
    gate = asyncio.Semaphore(20)  # not a thundering herd of handshakes

    async def one(kind: str, types: str | None) -> None:
        tally = Tally(kind, types)
        params = {"types": types} if types else {}
        req = request(kind, spec.host, spec.port, spec.key, params)
        cls = SseClient if kind == "sse" else WsClient
        async with gate:
            _, proto = await loop.create_connection(
                lambda: cls(req, tally, hist), spec.host, spec.port
            )
            status = await asyncio.wait_for(proto.ready, 30)
        tally.connected = status in (200, 101)
        made.append((tally, proto))

    await asyncio.gather(*(one(k, t) for k, t in spec.clients))
    return made


async def _worker(spec: WorkerSpec, pipe: Connection) -> None:
    hist = [0] * BINS
    clients = await connect(spec, hist)
    pipe.send(("ready", sum(t.connected for t, _ in clients)))
    loop = asyncio.get_running_loop()
    _, expect, deadline = await loop.run_in_executor(None, pipe.recv)
    cpu0 = time.process_time()
    while time.time() < deadline:
        if all(t.count >= expect[t.expect_types] or t.closed for t, _ in clients):
            break
        await asyncio.sleep(0.1)
    tallies = [
        {
            "kind": t.kind,
            "types": t.expect_types,
            "count": t.count,
            "out_of_order": t.out_of_order,
            "digest": t.digest,
            "closed": t.closed,
            "notices": [n.decode(errors="replace")[:200] for n in t.notices],
        }
        for t, _ in clients
    ]
    pipe.send(("done", {"hist": hist, "tallies": tallies, "cpu": time.process_time() - cpu0}))
    for _, proto in clients:
        if proto.transport is not None:
            proto.transport.close()


def run_worker(spec: WorkerSpec, pipe: Connection) -> None:
    asyncio.run(_worker(spec, pipe))
