"""Console pages on a big store, server-side: ``python -m bench.console [--events N] [--json F]``.

One tenant with N events (default 1,000,000) received over the last two days from three
sources, a tenth of them with a delivery to one of three endpoints (1 % of those dead), all
written straight into a fresh SQLite database; then each console page is requested ``--runs``
times in-process (an ASGI client, no network), and its median and worst times are printed.
What is timed is the server's work for the page: session lookup, queries, rendering. The
target (issue 17) is 300 ms for every page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from interlink import config
from interlink.app import Interlink
from interlink.domain.ids import new_id
from interlink.domain.models import Envelope
from interlink.domain.retry import RetryPolicy
from interlink.ingress.verifiers import standard_webhooks
from interlink.storage import migrate
from interlink.storage.tenancy import system_scope

ADMIN = "bench-admin-key-" + "x" * 24
TARGET_MS = 300.0
SPAN = 2 * 86400.0  # events received over the last two days


async def _tenant(system: Interlink) -> tuple[str, str, list[str], list[str]]:
    m = system.management
    with system_scope("bench set-up"):
        tenant, key = await m.create_tenant("bench")
        sources = [
            await m.create_source(
                tenant.id,
                name=f"partner-{i}",
                verifier="standard_webhooks",
                verifier_config={},
                secrets=[standard_webhooks.generate_secret()],
                envelope=Envelope(),
                max_body_bytes=1 << 20,
                tolerance_seconds=300,
            )
            for i in range(3)
        ]
        endpoints = [
            await m.create_endpoint(
                tenant.id,
                url=f"http://127.0.0.1:9/{i}",
                description=f"receiver-{i}",
                secret=standard_webhooks.generate_secret(),
                retry=RetryPolicy(schedule=(0,)),
                timeout_seconds=5.0,
            )
            for i in range(3)
        ]
    return tenant.id, key, [s.id for s in sources], [e.id for e in endpoints]


def _fill(path: Path, tenant_id: str, sources: list[str], endpoints: list[str], n: int) -> str:
    """N events (and a delivery for one in ten), in batches; returns one event's id."""
    rng = random.Random(7)
    now = time.time()
    db = sqlite3.connect(path)
    sample = ""
    batch = 20_000
    for start in range(0, n, batch):
        events, deliveries = [], []
        for i in range(start, min(n, start + batch)):
            event_id = new_id("event")
            at = now - SPAN * (n - i) / n
            events.append(
                (
                    event_id,
                    tenant_id,
                    sources[i % 3],
                    f"k{i}",
                    "booking.created",
                    f"b-{i % 50_000}",
                    at,
                    b'{"n": %d}' % i,
                    b"{}",
                    "{}",
                )
            )
            if i % 10 == 0:
                status = "dead" if rng.random() < 0.01 else "succeeded"
                deliveries.append(
                    (
                        new_id("delivery"),
                        tenant_id,
                        event_id,
                        i + 1,
                        endpoints[i % 3],
                        status,
                        1,
                        200 if status == "succeeded" else 500,
                        at,
                        at,
                    )
                )
            sample = event_id
        db.executemany(
            "INSERT INTO events (id, tenant_id, source_id, idempotency_key, type, key,"
            " received_at, data, raw, headers, origin) VALUES (?,?,?,?,?,?,?,?,?,?,'partner')",
            events,
        )
        db.executemany(
            "INSERT INTO deliveries (id, tenant_id, event_id, event_seq, endpoint_id, status,"
            " attempt_count, last_status_code, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            deliveries,
        )
        db.commit()
    db.execute("ANALYZE")
    db.close()
    return sample


async def _time_pages(
    system: Interlink, key: str, pages: list[str], runs: int
) -> dict[str, dict[str, float]]:
    transport = httpx.ASGITransport(app=system.api)
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        form = await client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        r = await client.post("/console/login", data={"key": key, "csrf": csrf.group(1)})
        assert r.status_code == 303, r.text
        for page in pages:
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                r = await client.get(page)
                times.append((time.perf_counter() - started) * 1000)
                assert r.status_code == 200, (page, r.status_code, r.text[:300])
            out[page] = {"median_ms": statistics.median(times), "max_ms": max(times)}
            print(
                f"{page:60} median {out[page]['median_ms']:8.1f} ms   worst {max(times):8.1f} ms",
                flush=True,
            )
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        path = Path(tmp) / "interlink.db"
        settings = config.load(
            path=str(Path(tmp) / "none.toml"),
            env={},
            database_url=f"sqlite:///{path}",
            admin_key=ADMIN,
        )
        system = Interlink(settings)
        await asyncio.to_thread(
            migrate.upgrade, settings.migration_url, secrets_keys=system.secrets_keys
        )
        tenant_id, key, sources, endpoints = await _tenant(system)
        started = time.perf_counter()
        sample = await asyncio.to_thread(_fill, path, tenant_id, sources, endpoints, args.events)
        print(
            f"{args.events:,} events written in {time.perf_counter() - started:.0f} s", flush=True
        )
        # As a process warms them at start (app.py), before its first page view.
        started = time.perf_counter()
        await system.event_counts.refresh(time.time())
        print(f"event counts warmed in {time.perf_counter() - started:.1f} s", flush=True)
        pages = [
            "/console/",
            "/console/events",
            "/console/events?type=booking.created",
            f"/console/events?source_id={sources[1]}",
            "/console/events?key=b-42",
            f"/console/events/{sample}",
            "/console/live/rows",
            "/console/endpoints",
            f"/console/endpoints/{endpoints[0]}",
            "/console/dead",
            "/console/quarantine",
            "/console/partners",
        ]
        try:
            results = await _time_pages(system, key, pages, args.runs)
        finally:
            await system.db.close()
    slow = [p for p, r in results.items() if r["median_ms"] > TARGET_MS]
    print(f"over {TARGET_MS:.0f} ms: {', '.join(slow) if slow else 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"events": args.events, "pages": results}, indent=2))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
