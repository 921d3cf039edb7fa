"""Realtime streams under load: ``python -m bench.streams [--sse N] [--ws M] [--rate R]``.

Runs ``interlink up`` (SQLite, a temporary directory) as its own process; connects N SSE and M
WebSocket clients of one tenant from this process; appends events through the ingest route at
R events/s for the given seconds, each carrying the time it was sent; and reports:

* fan-out latency (sent → received by a client, per delivery): p50, p99, max;
* whether every client received every event, in log order, once;
* memory per idle connection: the server's RSS growth over ``--idle`` more connections that
  receive nothing (a filter no event matches), divided by their number.

Client and server share the machine's cores: the latencies are an upper bound of the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.conftest import signed

from bench.procs import free_port, wait_until
from interlink.cli._sse import SseParser

ADMIN = "ik_admin_bench_" + "b" * 32


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Client:
    def __init__(self) -> None:
        self.positions: list[int] = []
        self.latencies: list[float] = []

    def got(self, event: dict[str, Any]) -> None:
        self.positions.append(int(event["seq"]))
        self.latencies.append(time.time() - float(event["data"]["sent"]))


async def sse_client(
    url: str, key: str, client: Client, ready: asyncio.Event, **params: str
) -> None:
    parser = SseParser()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        headers = {"Authorization": f"Bearer {key}"}
        async with session.get(f"{url}/api/v1/stream", headers=headers, params=params) as r:
            assert r.status == 200, await r.text()
            ready.set()
            async for raw in r.content:
                message = parser.feed(raw.decode().rstrip("\r\n"))
                if message is not None and message.event == "message":
                    client.got(json.loads(message.data))


async def ws_client(url: str, key: str, client: Client, ready: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {key}"}
        async with session.ws_connect(f"{url}/api/v1/ws", headers=headers) as ws:
            ready.set()
            async for message in ws:
                body = json.loads(message.data)
                if "id" in body:
                    client.got(body["data"])


def start_server(workdir: Path, port: int, connections: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")},
        "INTERLINK_ADMIN_KEY": ADMIN,
        "INTERLINK_PORT": str(port),
        "INTERLINK_LOG_LEVEL": "warning",
        "INTERLINK_HTTP_MAX_CONNECTIONS": str(connections),
    }
    interlink = Path(sys.executable).parent / "interlink"
    with open(workdir / "interlink.log", "wb") as log:
        return subprocess.Popen(
            [str(interlink), "up"], cwd=workdir, env=env, stdout=log, stderr=log
        )


async def run(
    args: argparse.Namespace, url: str, server: subprocess.Popen[bytes]
) -> dict[str, Any]:
    await asyncio.to_thread(wait_until, lambda: _healthy(url), timeout=30, what="interlink up")
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        t = await (
            await http.post(f"{url}/api/v1/tenants", json={"name": "b"}, headers=admin)
        ).json()
        key = t["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        s = await (
            await http.post(f"{url}/api/v1/sources", json={"name": "s"}, headers=auth)
        ).json()
        source, secret = s["source"]["id"], s["secrets"][0]

        before = rss_kib(server.pid)
        idle = [Client() for _ in range(args.idle)]
        tasks = []
        for c in idle:
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(sse_client(url, key, c, ready, types="none.*")))
            await ready.wait()
        await asyncio.sleep(2)
        per_idle = (rss_kib(server.pid) - before) / max(1, args.idle)

        clients = [Client() for _ in range(args.sse + args.ws)]
        for i, c in enumerate(clients):
            ready = asyncio.Event()
            make = sse_client(url, key, c, ready) if i < args.sse else ws_client(url, key, c, ready)
            tasks.append(asyncio.create_task(make))
            await ready.wait()

        sent = 0
        started = time.monotonic()
        total = int(args.rate * args.seconds)
        while sent < total:
            due = started + sent / args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            payload = {"type": "booking.created", "data": {"sent": time.time(), "n": sent}}
            body, headers = signed(secret, f"m{sent}", payload)
            async with http.post(f"{url}/in/{source}", data=body, headers=headers) as r:
                assert r.status == 202
            sent += 1
        append_seconds = time.monotonic() - started
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(len(c.positions) < total for c in clients):
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [x for c in clients for x in c.latencies]
    complete = all(
        len(c.positions) == total and c.positions == sorted(set(c.positions)) for c in clients
    )
    return {
        "sse_clients": args.sse,
        "ws_clients": args.ws,
        "events": total,
        "append_rate_per_s": round(total / append_seconds, 1),
        "deliveries": len(latencies),
        "every_client_every_event_in_order": complete,
        "fanout_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "fanout_p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 1),
        "fanout_max_ms": round(max(latencies) * 1000, 1),
        "idle_connections": args.idle,
        "rss_per_idle_connection_kib": round(per_idle, 1),
    }


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sse", type=int, default=50)
    parser.add_argument("--ws", type=int, default=10)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="events appended a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    port = free_port()
    server = start_server(workdir, port, args.sse + args.ws + args.idle + 100)
    try:
        result = asyncio.run(run(args, f"http://127.0.0.1:{port}", server))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
