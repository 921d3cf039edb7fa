"""The partners: a process of its own that POSTs the workload at a fixed rate (open loop).

Open loop means the schedule does not wait for answers: request ``i`` is due at
``t0 + i / request_rate`` whatever the system under test does, so a slow system meets a queue
instead of a politely slowed-down client (no coordinated omission). Requests go over keep-alive
connections (at most ``connections`` at once; a request that finds them all busy waits for one,
and that wait counts in its latency).

Every request is made and signed before its step starts, so the generator's cost while sending is
HTTP only. The process reports its own CPU seconds (making the requests and sending them,
separately), so a reader can see that it is not the bottleneck.

The orchestrator talks to it over a pipe (``run`` → ``started`` then the result; ``stop``), and
reads live progress from shared counters (see :data:`COUNTERS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.fasthttp import Client, host_port
from bench.workload import Generator, Request, Workload

# Indexes into the shared counters array.
DONE, ACKED_EVENTS, ERRORS, IN_FLIGHT = range(4)
COUNTERS = 4

TICK = 0.001  # the scheduler's resolution, seconds
START_DELAY = 0.2  # seconds between the end of generation and the first request


@dataclass(frozen=True)
class RunSpec:
    targets: tuple[str, ...]  # the ingest URL of each source, by source index
    rate: float  # new events per second (duplicates come on top)
    duration: float  # seconds of sending
    connections: int = 256
    timeout: float = 60.0
    client: str = "fast"  # "fast" (bench.fasthttp) or "aiohttp"
    # Closed loop: this many senders, each sending its next request when the previous one is
    # answered, for ``duration`` s; ``rate`` then only caps how many requests are made ahead.
    closed_loop: int = 0


@dataclass
class RunResult:
    """What happened to every request of a step, by request index."""

    refs: list[str]
    source: array[int]
    dup: array[int]
    scheduled: array[float]  # wall clock
    start: array[float]  # wall clock, right before the request was handed to the client
    end: array[float]  # wall clock, when the answer had been read
    status: array[int]  # HTTP status, or -1 for a transport error or time-out
    first_error: str | None
    t0: float
    generate_seconds: float
    generate_cpu: float
    send_cpu: float
    send_wall: float

    @property
    def requests(self) -> int:
        return len(self.refs)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadGenerator:
    def __init__(self, workload: Workload, counters: Any, stream_seed: int) -> None:
        self._generator = Generator(workload, stream_seed)
        self._counters = counters
        self._session: aiohttp.ClientSession | None = None
        self._connections = 0
        self._fast: dict[tuple[str, int, int], Client] = {}

    async def _client(self, connections: int) -> aiohttp.ClientSession:
        if self._session is None or self._connections != connections:
            if self._session is not None:
                await self._session.close()
            connector = aiohttp.TCPConnector(
                limit=connections, limit_per_host=connections, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), trust_env=False
            )
            self._connections = connections
        return self._session

    def _fast_client(self, url: str, connections: int) -> Client:
        host, port = host_port(url)
        key = (host, port, connections)
        if key not in self._fast:
            self._fast[key] = Client(host, port, connections)
        return self._fast[key]

    async def close(self) -> None:
        for client in self._fast.values():
            client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, spec: RunSpec, conn: Connection) -> RunResult:
        counters = self._counters
        for i in range(COUNTERS):
            counters[i] = 0

        cpu0, gen_started = _cpu(), time.perf_counter()
        events = max(1, round(spec.rate * spec.duration))
        requests = self._generator.requests(events, time.time())
        n = len(requests)
        post = await self._poster(spec, requests)
        generate_seconds = time.perf_counter() - gen_started
        cpu1 = _cpu()

        interval = spec.duration / n
        scheduled = array("d", [0.0]) * n
        start = array("d", [0.0]) * n
        end = array("d", [0.0]) * n
        status = array("i", [0]) * n
        acked: set[str] = set()
        errors: list[str] = []

        async def send(i: int) -> None:
            r = requests[i]
            counters[IN_FLIGHT] += 1
            start[i] = time.time()
            code = -1
            try:
                code = await post(i)
            except Exception as exc:  # recorded as a failed request, whatever it was
                if not errors:
                    errors.append(f"{type(exc).__name__}: {exc}")
            end[i] = time.time()
            status[i] = code
            counters[IN_FLIGHT] -= 1
            counters[DONE] += 1
            if 200 <= code < 300:
                if r.ref not in acked:
                    acked.add(r.ref)
                    counters[ACKED_EVENTS] += 1
            else:
                counters[ERRORS] += 1
                if not errors and code != -1:
                    errors.append(f"HTTP {code} from {spec.targets[r.source]}")

        loop = asyncio.get_running_loop()
        t0_loop = loop.time() + START_DELAY
        t0 = time.time() + START_DELAY
        conn.send(("started", t0))
        if spec.closed_loop:
            sent = await self._closed_loop(spec, n, send, scheduled, t0_loop)
        else:
            await self._open_loop(n, interval, send, scheduled, t0, t0_loop)
            sent = n
        send_wall = time.time() - t0
        cpu2 = _cpu()
        requests = requests[:sent]
        return RunResult(
            refs=[r.ref for r in requests],
            source=array("i", [r.source for r in requests]),
            dup=array("b", [r.dup for r in requests]),
            scheduled=scheduled[:sent],
            start=start[:sent],
            end=end[:sent],
            status=status[:sent],
            first_error=errors[0] if errors else None,
            t0=t0,
            generate_seconds=generate_seconds,
            generate_cpu=cpu1 - cpu0,
            send_cpu=cpu2 - cpu1,
            send_wall=send_wall,
        )

    @staticmethod
    async def _open_loop(
        n: int,
        interval: float,
        send: Callable[[int], Coroutine[Any, Any, None]],
        scheduled: array[float],
        t0: float,
        t0_loop: float,
    ) -> None:
        """Request ``i`` at ``t0 + i * interval``, answered or not."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while i < n:
            now = loop.time() - t0_loop
            while i < n and i * interval <= now:
                scheduled[i] = t0 + i * interval
                task = loop.create_task(send(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if i < n:
                # At least a millisecond: the loop's timers have that resolution, and shorter
                # sleeps return at once, spinning the CPU this process is meant to spare.
                await asyncio.sleep(max(TICK, i * interval - (loop.time() - t0_loop)))
        if tasks:
            await asyncio.wait(set(tasks))

    @staticmethod
    async def _closed_loop(
        spec: RunSpec,
        n: int,
        send: Callable[[int], Coroutine[Any, Any, None]],
        scheduled: array[float],
        t0_loop: float,
    ) -> int:
        """``spec.closed_loop`` senders back to back until ``spec.duration``; how many were sent."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, t0_loop - loop.time()))
        t_end = t0_loop + spec.duration
        next_index = 0

        async def sender() -> None:
            nonlocal next_index
            while next_index < n and loop.time() < t_end:
                i = next_index
                next_index += 1
                scheduled[i] = time.time()
                await send(i)

        await asyncio.gather(*(sender() for _ in range(spec.closed_loop)))
        return next_index

    async def _poster(
        self, spec: RunSpec, requests: list[Request]
    ) -> Callable[[int], Awaitable[int]]:
        """``post(i)`` sends request ``i`` and returns the status code."""
        if spec.client == "fast":
            raws = [Client.encode(spec.targets[r.source], r.headers, r.body) for r in requests]
            clients = [
                self._fast_client(spec.targets[r.source], spec.connections) for r in requests
            ]
            timeout = spec.timeout

            async def fast(i: int) -> int:
                return await clients[i].send(raws[i], timeout)

            return fast

        session = await self._client(spec.connections)
        headers = [dict(r.headers) for r in requests]
        client_timeout = aiohttp.ClientTimeout(total=spec.timeout)

        async def with_aiohttp(i: int) -> int:
            r = requests[i]
            async with session.post(
                spec.targets[r.source], data=r.body, headers=headers[i], timeout=client_timeout
            ) as response:
                await response.read()
                return response.status

        return with_aiohttp


def main(conn: Connection, counters: Any, workload_seed: int, stream_seed: int) -> None:
    """Process entry point: serve ``run`` commands until ``stop`` (or the pipe closes)."""
    import signal

    # Ctrl-C goes to the orchestrator, which stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    generator = LoadGenerator(Workload.make(workload_seed), counters, stream_seed)
    try:
        while True:
            try:
                command, arg = conn.recv()
            except EOFError:
                break
            if command == "stop":
                break
            if command == "run":
                try:
                    result = loop.run_until_complete(generator.run(arg, conn))
                    conn.send(("result", result))
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(generator.close())
        loop.close()
