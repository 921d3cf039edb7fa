"""The tenants' endpoints: a process of its own with one HTTP server, a path per endpoint.

The server is :mod:`bench.fasthttp`'s (a quarter of aiohttp's CPU per request on this machine,
which the system under test gets back) or aiohttp's (``--receiver aiohttp``).

Every delivery's Standard Webhooks signature is verified (with Interlink's own verifier, which is
the spec's algorithm; the baseline signs the same way, and a forged or mis-signed delivery is
counted and answered 401). For each delivery it records the ``webhook-id``, the event's ``ref``,
booking key and per-key ``seq`` (from the body) and the arrival time. :func:`analyze` turns those
records and the load generator's into lost / duplicated / out-of-order counts and latencies.

The orchestrator talks to it over a pipe (``collect`` → records; ``fault``; ``stop``) and reads
the count of distinct deliveries from shared counters (see :data:`COUNTERS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
from aiohttp import web

from bench import fasthttp
from bench.loadgen import RunResult
from bench.workload import TOLERANCE_SECONDS, Workload
from interlink.ingress.verifiers import VerificationError
from interlink.ingress.verifiers.standard_webhooks import verify

# Indexes into the shared counters array.
DELIVERED, REQUESTS, BAD_SIGNATURES = range(3)
COUNTERS = 3

# One delivery as received: (endpoint index, webhook-id, ref, booking key, seq, arrival time).
Record = tuple[int, str, str, str, int, float]


class _Data(msgspec.Struct):
    booking_id: str
    seq: int
    ref: str


class _Payload(msgspec.Struct):
    data: _Data


_decode = msgspec.json.Decoder(_Payload).decode


class ReceiverServer:
    """Verifies and records deliveries; served by :mod:`bench.fasthttp` or by aiohttp."""

    def __init__(self, secrets: list[str], counters: Any, port: int, kind: str) -> None:
        self._secrets = [[s] for s in secrets]
        self._counters = counters
        self.port = port
        self.kind = kind
        self.records: list[Record] = []
        self._seen: set[tuple[int, str]] = set()
        self.bad: list[str] = []
        self._fast: fasthttp.Server | None = None
        self._runner: web.AppRunner | None = None
        self._stop_after: int | None = None

    @property
    def running(self) -> bool:
        return self._fast is not None or self._runner is not None

    async def start(self) -> None:
        if self.kind == "fast":
            self._fast = fasthttp.Server(self.receive)
            await self._fast.start("127.0.0.1", self.port)
            return
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/hooks/{endpoint}", self._aiohttp_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=4096, reuse_address=True)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        fast, self._fast = self._fast, None
        if fast is not None:
            await fast.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _aiohttp_handler(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.receive(request.path, request.headers, body)
        return web.Response(status=status)

    def receive(self, path: str, headers: Mapping[str, str], body: bytes) -> int:
        """Verify and record one delivery to ``/hooks/<endpoint index>``; the status to answer."""
        arrived = time.time()
        counters = self._counters
        counters[REQUESTS] += 1
        try:
            index = int(path.rsplit("/", 1)[1])
            verify(body, headers, self._secrets[index], {}, TOLERANCE_SECONDS, arrived)
            data = _decode(body).data
        except (VerificationError, ValueError, IndexError, msgspec.DecodeError) as exc:
            counters[BAD_SIGNATURES] += 1
            if len(self.bad) < 20:
                self.bad.append(f"{path}: {exc}")
            return 401
        webhook_id = headers.get("webhook-id", "")
        self.records.append((index, webhook_id, data.ref, data.booking_id, data.seq, arrived))
        pair = (index, data.ref)
        if pair not in self._seen:
            self._seen.add(pair)
            counters[DELIVERED] += 1
        if self._stop_after is not None and len(self.records) >= self._stop_after:
            # Fault injection: the receivers go away mid-run (connections refused from now on).
            self._stop_after = None
            asyncio.get_running_loop().create_task(self.stop())
        return 200

    def collect(self, reset: bool) -> tuple[list[Record], list[str]]:
        records, bad = self.records, self.bad
        if reset:
            self.records, self.bad = [], []
            self._seen.clear()
            for i in range(COUNTERS):
                self._counters[i] = 0
        return records, bad

    def fault(self, stop_after: int | None) -> None:
        self._stop_after = stop_after


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def main(conn: Connection, counters: Any, secrets: list[str], port: int, kind: str) -> None:
    """Process entry point: serve until ``stop`` (or the pipe closes)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = ReceiverServer(secrets, counters, port, kind)
    done: asyncio.Future[None] = loop.create_future()

    async def collect(reset: bool) -> tuple[list[Record], list[str]]:
        records, bad = server.collect(reset)
        if reset and not server.running:
            await server.start()  # a fault stopped it: the next step has receivers again
        return records, bad

    def commands() -> None:
        # Blocking reads and writes on a thread of their own: an event loop that polls the
        # pipe makes it non-blocking, and a large reply would then be cut short.
        while True:
            try:
                command, arg = conn.recv()
            except (EOFError, OSError):
                command, arg = "stop", None
            if command == "collect":
                got = asyncio.run_coroutine_threadsafe(collect(bool(arg)), loop).result()
                conn.send(("records", got))
            elif command == "fault":
                loop.call_soon_threadsafe(server.fault, arg)
                conn.send(("ok", None))
            else:
                loop.call_soon_threadsafe(_finish, done)
                return

    try:
        loop.run_until_complete(server.start())
        conn.send(("ready", port))
        threading.Thread(target=commands, name="commands", daemon=True).start()
        loop.run_until_complete(done)
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(server.stop())
        loop.close()


# analysis ---------------------------------------------------------------------------------------


@dataclass
class Correctness:
    requests: int = 0
    events: int = 0  # distinct events sent
    duplicate_requests: int = 0  # partner re-sends
    rejected: int = 0  # requests not answered 2xx (or not at all)
    acked_events: int = 0
    expected: int = 0  # deliveries owed: acked events x their tenant's endpoints
    delivered: int = 0  # distinct (endpoint, event) pairs received
    lost: int = 0  # owed but never received
    duplicates: int = 0  # deliveries beyond the first of a pair
    duplicates_with_other_id: int = 0  # repeated pairs whose webhook-ids differ (must be 0)
    order_violations: int = 0  # deliveries with a lower seq than one already received for the key
    keys_out_of_order: int = 0
    unexpected: int = 0  # received for an event this step never got acknowledged
    bad_signatures: int = 0
    e2e_ms: list[float] = field(default_factory=list)  # partner send → first receipt, per pair
    ack_ms: list[float] = field(default_factory=list)  # request start → answer read, 2xx only
    lost_examples: list[str] = field(default_factory=list)
    first_error: str | None = None

    def problems(self) -> list[str]:
        """What the smoke fails on."""
        out = []
        if self.rejected:
            out.append(f"{self.rejected} requests were not acknowledged ({self.first_error})")
        if self.lost:
            out.append(f"{self.lost} acknowledged deliveries lost, e.g. {self.lost_examples[:3]}")
        if self.duplicates_with_other_id:
            out.append(f"{self.duplicates_with_other_id} duplicates carry another webhook-id")
        if self.bad_signatures:
            out.append(f"{self.bad_signatures} deliveries failed signature verification")
        if self.delivered == 0:
            out.append("nothing was delivered")
        return out


def analyze(
    workload: Workload, sent: RunResult, records: list[Record], bad_signatures: int
) -> Correctness:
    c = Correctness(requests=sent.requests, bad_signatures=bad_signatures)
    c.first_error = sent.first_error
    first_send: dict[str, float] = {}
    tenant_of: dict[str, int] = {}
    acked: set[str] = set()
    for i, ref in enumerate(sent.refs):
        tenant_of[ref] = workload.sources[sent.source[i]].tenant
        if sent.dup[i]:
            c.duplicate_requests += 1
        start = sent.start[i]
        if ref not in first_send or start < first_send[ref]:
            first_send[ref] = start
        if 200 <= sent.status[i] < 300:
            acked.add(ref)
            c.ack_ms.append((sent.end[i] - start) * 1000.0)
        else:
            c.rejected += 1
    c.events = len(first_send)
    c.acked_events = len(acked)

    endpoints_of = {t: [e.index for e in workload.endpoints_of(t)] for t in set(tenant_of.values())}
    owed = {(e, ref) for ref in acked for e in endpoints_of[tenant_of[ref]]}
    c.expected = len(owed)

    ids: dict[tuple[int, str], set[str]] = defaultdict(set)
    counts: dict[tuple[int, str], int] = defaultdict(int)
    highest: dict[tuple[int, str], int] = {}
    keys_bad: set[tuple[int, str]] = set()
    for endpoint, webhook_id, ref, key, seq, arrived in records:
        pair = (endpoint, ref)
        counts[pair] += 1
        ids[pair].add(webhook_id)
        if counts[pair] == 1:
            if ref in first_send:
                c.e2e_ms.append((arrived - first_send[ref]) * 1000.0)
            if pair not in owed:
                c.unexpected += 1
        stream = (endpoint, key)
        top = highest.get(stream)
        if top is not None and seq < top:
            c.order_violations += 1
            keys_bad.add(stream)
        if top is None or seq > top:
            highest[stream] = seq
    c.delivered = len(counts)
    c.duplicates = sum(n - 1 for n in counts.values())
    c.duplicates_with_other_id = sum(
        1 for pair, n in counts.items() if n > 1 and len(ids[pair]) > 1
    )
    c.keys_out_of_order = len(keys_bad)
    missing = owed - counts.keys()
    c.lost = len(missing)
    c.lost_examples = [f"{ref}→endpoint {e}" for e, ref in sorted(missing)[:5]]
    return c
