"""Realtime streams under load: ``python -m bench.streams [--sse N] [--ws M] [--rate R]``.

Runs ``interlink up`` (SQLite, a temporary directory) as its own process; spreads N SSE and M
WebSocket clients of one tenant over ``--procs`` client processes (bench/stream_clients.py:
bare protocols, so a thousand clients do not cost more than the server); half the clients
filter ``types=booking.*``, the others take everything. An appender process posts events
through the ingest route at R events/s (alternately booking.created and payment.succeeded),
each carrying the time it was sent. Reports:

* fan-out latency (sent → received by a client, per delivery): p50, p99, max;
* whether every client received every event its filter matches, in log order, once (counts,
  order, and a digest of the positions equal across clients of one filter);
* memory per idle connection: the server's RSS growth over ``--idle`` connections that
  receive nothing (a filter no event matches; they stay open through the run), divided by K;
* with ``--stalled K``: K more clients that send their request and never read; when the server
  cut them (its ``interlink_streams_closed{reason="overflow"}``), compared with the run without.

Clients, appender and server share the machine's cores: the latencies are an upper bound of
the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.conftest import signed

from bench.procs import free_port, wait_until
from bench.stream_clients import BINS, WorkerSpec, run_worker

ADMIN = "ik_admin_bench_" + "b" * 32
BOOKING = "booking.*"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workdir: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    connections = args.sse + args.ws + args.idle + args.stalled + 100
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")},
        "INTERLINK_ADMIN_KEY": ADMIN,
        "INTERLINK_PORT": str(port),
        "INTERLINK_LOG_LEVEL": "warning",
        "INTERLINK_HTTP_MAX_CONNECTIONS": str(connections),
        "INTERLINK_STREAM_QUEUE_SIZE": str(args.queue_size),
    }
    interlink = Path(sys.executable).parent / "interlink"
    with open(workdir / "interlink.log", "wb") as log:
        return subprocess.Popen(
            [str(interlink), "up"], cwd=workdir, env=env, stdout=log, stderr=log
        )


def _call(url: str, path: str, body: Any = None, key: str = ADMIN) -> Any:
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if data is None else "POST"
    req = urllib.request.Request(f"{url}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def overflows(url: str) -> float:
    text = _call(url, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("interlink_streams_closed_total{") and 'reason="overflow"' in line
    )


# the appender -------------------------------------------------------------------------------


async def _append(
    url: str, source: str, secret: str, rate: float, total: int, prefix: str = "m", pad: int = 0
) -> dict[str, Any]:
    started = time.monotonic()
    refused = 0
    next_n = 0

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal next_n, refused
        while next_n < total:
            n, next_n = next_n, next_n + 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            kind = "booking.created" if n % 2 == 0 else "payment.succeeded"
            data = b'{"n":%d,"pad":"%s","sent":%.6f}' % (n, b"x" * pad, time.time())
            body = b'{"type":"%s","data":%s}' % (kind.encode(), data)
            payload, headers = signed(secret, f"{prefix}{n}", body)
            async with http.post(f"{url}/in/{source}", data=payload, headers=headers) as r:
                refused += r.status != 202

    async with aiohttp.ClientSession() as http:
        # Enough in flight that group commit latency (~100 ms under load) does not cap the rate.
        await asyncio.gather(*(worker(http) for _ in range(64)))
    seconds = time.monotonic() - started
    return {"sent": total, "refused": refused, "rate": round(total / seconds, 1)}


def run_appender(
    url: str, source: str, secret: str, rate: float, total: int, pad: int, pipe: Connection
) -> None:
    pipe.send(asyncio.run(_append(url, source, secret, rate, total, pad=pad)))


# the run ------------------------------------------------------------------------------------


def _spawn(spec: WorkerSpec) -> tuple[mp.Process, Connection]:
    ours, theirs = mp.Pipe()
    p = mp.Process(target=run_worker, args=(spec, theirs), daemon=True)
    p.start()
    return p, ours


def _stalled(host: str, port: int, key: str, n: int) -> list[socket.socket]:
    """Clients that ask for the stream and never read a byte of it."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, port))
        auth = f"Authorization: Bearer {key}\r\n"
        s.sendall(f"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        socks.append(s)
    return socks


def _watch(
    url: str, appender: Connection, started: float, stalled: int, limit: float
) -> float | None:
    """Waits for the appender to finish and, with stalled clients, for the server to cut them
    (its overflow counter); answers when they were cut, seconds after the appends began."""
    cut_after: float | None = None
    while True:
        done = appender.poll(0.25)
        elapsed = time.monotonic() - started
        if stalled and cut_after is None and overflows(url) >= stalled:
            cut_after = elapsed
        if done and (not stalled or cut_after is not None or elapsed > limit):
            return cut_after


def percentile(hist: list[int], q: float) -> float:
    total, seen = sum(hist), 0
    for ms, n in enumerate(hist):
        seen += n
        if seen >= q * total:
            return float(ms)
    return float(BINS)


def run(args: argparse.Namespace, url: str, host: str, port: int, pid: int) -> dict[str, Any]:
    wait_until(lambda: _healthy(url), timeout=30, what="interlink up")
    key = _call(url, "/api/v1/tenants", {"name": "b"})["api_key"]
    made = _call(url, "/api/v1/sources", {"name": "s"}, key)
    source, secret = made["source"]["id"], made["secrets"][0]

    # Warm-up (the source cache, the database's first writes), before any client listens.
    asyncio.run(_append(url, source, secret, 50.0, 50, prefix="warm"))
    before = rss_kib(pid)
    idle = _spawn(WorkerSpec(host, port, key, [("sse", "none.*")] * args.idle))
    assert idle[1].recv()[1] == args.idle, "idle clients refused"
    time.sleep(2)
    per_idle = (rss_kib(pid) - before) / max(1, args.idle)

    kinds = [("sse", BOOKING if i % 2 else None) for i in range(args.sse)]
    kinds += [("ws", BOOKING if i % 2 else None) for i in range(args.ws)]
    workers = [
        _spawn(WorkerSpec(host, port, key, kinds[i :: args.procs])) for i in range(args.procs)
    ]
    connected = sum(pipe.recv()[1] for _, pipe in workers)
    assert connected == len(kinds), f"{connected} of {len(kinds)} clients connected"
    stalled = _stalled(host, port, key, args.stalled)

    total = int(args.rate * args.seconds)
    expect = {None: total, BOOKING: (total + 1) // 2}
    deadline = time.time() + max(60.0, 6 * args.seconds)  # a slow appender still ends
    for _, pipe in workers:
        pipe.send(("go", expect, deadline))
    cpu0, started = cpu_seconds(pid), time.monotonic()
    ours, theirs = mp.Pipe()
    appending = (url, source, secret, args.rate, total, args.pad, theirs)
    appender = mp.Process(target=run_appender, args=appending)
    appender.start()
    cut_after = _watch(url, ours, started, len(stalled), max(60.0, 6 * args.seconds))
    appended = ours.recv()
    reports = [pipe.recv()[1] for _, pipe in workers]
    server_cpu = cpu_seconds(pid) - cpu0
    wall = time.monotonic() - started
    for s in stalled:
        s.close()
    idle[0].terminate()
    for p, _ in workers:
        p.join(10)

    result = summary(reports, expect)
    result.update(
        sse_clients=args.sse,
        ws_clients=args.ws,
        client_processes=args.procs,
        appended=appended,
        server_cpu_s_per_s=round(server_cpu / wall, 2),
        idle_connections=args.idle,
        rss_per_idle_connection_kib=round(per_idle, 1),
        stalled_clients=args.stalled,
        stalled_cut_after_s=None if cut_after is None else round(cut_after, 1),
        queue_size=args.queue_size,
        pad_bytes=args.pad,
    )
    return result


def summary(reports: list[dict[str, Any]], expect: dict[str | None, int]) -> dict[str, Any]:
    hist = [sum(r["hist"][i] for r in reports) for i in range(BINS)]
    tallies = [t for r in reports for t in r["tallies"]]
    digests = {f: {t["digest"] for t in tallies if t["types"] == f} for f in expect}
    complete = all(
        t["count"] == expect[t["types"]] and not t["out_of_order"] and not t["closed"]
        for t in tallies
    ) and all(len(d) == 1 for d in digests.values())
    return {
        "events": expect[None],
        "deliveries": sum(hist),
        "expected_deliveries": sum(expect[t["types"]] for t in tallies),
        "every_client_every_matching_event_in_order": complete,
        "clients_short": sum(t["count"] < expect[t["types"]] for t in tallies),
        "notices": sorted({n[:80] for t in tallies for n in t["notices"]})[:5],
        "fanout_p50_ms": percentile(hist, 0.5),
        "fanout_p99_ms": percentile(hist, 0.99),
        "fanout_max_ms": percentile(hist, 1.0),
        "client_cpu_s": round(sum(r["cpu"] for r in reports), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sse", type=int, default=50)
    parser.add_argument("--ws", type=int, default=10)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--stalled", type=int, default=0, help="clients that never read")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--rate", type=float, default=100.0, help="events appended a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--queue-size", type=int, default=1000, help="stream_queue_size")
    parser.add_argument(
        "--pad",
        type=int,
        default=0,
        help="bytes of padding in each event (a stalled client's socket buffers fill sooner)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    host, port = "127.0.0.1", free_port()
    server = start_server(workdir, port, args)
    try:
        result = run(args, f"http://{host}:{port}", host, port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
