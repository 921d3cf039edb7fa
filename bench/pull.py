"""Pull consumers, events/s: ``python -m bench.pull [--events N] [--consumers 3] [--json F]``.

Both sides consume the same backlog in the same run, on the same machine: N events over 500
keys waiting before the consumers start, each handed to a handler that only counts it
(bench/pull_handler.py), then settled:

* **Interlink**: ``interlink up`` (SQLite); the events are published (batch API) to a pull
  endpoint, ordered by key (``--unordered`` too: both are measured) with lane concurrency 500;
  ``--consumers`` processes of ``interlink-consume bench.pull_handler:app`` (the SDK's Consumer,
  20 messages in hand each) claim with long polls and ack each message over loopback HTTP, every
  claim and ack a committed transaction.
* **Baseline** (Celery + Redis): N ``consume`` tasks queued on the Redis broker; one Celery
  worker with a prefork pool of ``--consumers`` processes (``acks_late``, as the baseline's
  delivery worker) runs them. Celery keeps no order per key, and Redis (scripts/redis.sh) runs
  without persistence: an acknowledged task there is not on disk.

Events/s is counted from the first handled message to the last (the processes' start-up is
left out on both sides); the handlers' counts must add up to N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Service, install_handlers, stop_all, wait_until
from bench.publish import _post_all, celery_redis, interlink_up
from bench.systems import BIN, REPO, base_env

KEYS = 500
QUEUE = "consume-bench"


def events(n: int) -> list[list[dict[str, Any]]]:
    out = [
        {
            "type": "booking.confirmed",
            "data": {"booking_id": f"b-{i}", "nights": 1 + i % 7, "guest": {"name": "A. Guest"}},
            "key": f"listing-{i % KEYS}",
            "idempotency_key": f"bk-{i:07d}",
        }
        for i in range(n)
    ]
    return [out[i : i + 500] for i in range(0, n, 500)]


def handled(counts: Path) -> int:
    return sum(p.stat().st_size for p in counts.glob("*.count"))


def timed(counts: Path, n: int, timeout: float) -> float:
    """Seconds from the first handled message to the n-th."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        done = handled(counts)
        if done and first is None:
            first = time.perf_counter()
        if done >= n:
            assert first is not None
            return time.perf_counter() - first
        time.sleep(0.02)
    raise RuntimeError(f"{handled(counts)} of {n} handled within {timeout} s")


def interlink(n: int, consumers: int, ordering: str, workdir: Path) -> dict[str, Any]:
    counts = workdir / f"interlink-{ordering}"
    counts.mkdir()
    with interlink_up(f"consumer-{ordering}") as (base, key):
        auth = {"Authorization": f"Bearer {key}"}
        made = httpx.post(
            f"{base}/api/v1/endpoints",
            json={"kind": "pull", "ordering": ordering, "concurrency": 500},
            headers=auth,
        )
        made.raise_for_status()
        endpoint = made.json()["endpoint"]["id"]
        httpx.post(
            f"{base}/api/v1/subscriptions",
            json={"endpoint_id": endpoint, "event_types": ["booking.*"]},
            headers=auth,
        ).raise_for_status()
        asyncio.run(_post_all(base, key, events(n), 4))
        wait_until(  # every delivery made before the consumers start
            lambda: (
                httpx.get(
                    f"{base}/api/v1/deliveries",
                    params={"endpoint_id": endpoint, "event_id": _last_event(base, auth)},
                    headers=auth,
                ).json()["data"]
                != []
            ),
            timeout=60,
            what="the backlog routed",
        )
        env = base_env() | {
            "INTERLINK_API_URL": base,
            "INTERLINK_API_KEY": key,
            "INTERLINK_ENDPOINT_ID": endpoint,
            "BENCH_PULL_DIR": str(counts),
        }
        argv = [sys.executable, "-m", "interlink_client.consumer.cli", "bench.pull_handler:app"]
        procs = [
            Service(f"consumer-{i}", argv, cwd=REPO, env=env, log=counts / f"{i}.log")
            for i in range(consumers)
        ]
        for p in procs:
            p.start()
        try:
            seconds = timed(counts, n, timeout=600)
        finally:
            for p in procs:
                p.stop()
    return {"events": handled(counts), "seconds": seconds, "events_per_s": n / seconds}


def _last_event(base: str, auth: dict[str, str]) -> str:
    page = httpx.get(f"{base}/api/v1/events", params={"limit": 1}, headers=auth).json()
    return str(page["data"][0]["id"])


def baseline(n: int, consumers: int, workdir: Path) -> dict[str, Any]:
    counts = workdir / "baseline"
    counts.mkdir()
    with celery_redis("consume") as url:
        import redis

        from bench.baselines.fastapi_celery.tasks import consume

        client = redis.Redis.from_url(url)
        client.flushdb()
        for batch in events(n):
            for e in batch:
                consume.apply_async(args=(json.dumps(e),), queue=QUEUE)
        env = base_env() | {"BENCH_PULL_DIR": str(counts)}
        worker = Service(
            "celery",
            [
                str(BIN / "celery"),
                "-A",
                "bench.baselines.fastapi_celery.tasks",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(consumers),
                "--queues",
                QUEUE,
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-Odefault",
                "--hostname",
                f"consume-bench-{os.getpid()}@localhost",
            ],
            cwd=REPO,
            env=env,
            log=counts / "celery.log",
            stop_timeout=15,
        )
        worker.start()
        try:
            seconds = timed(counts, n, timeout=600)
        finally:
            worker.stop()
            client.flushdb()
            client.close()
    return {"events": handled(counts), "seconds": seconds, "events_per_s": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    install_handlers()
    workdir = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    try:
        results = {
            "baseline": baseline(args.events, args.consumers, workdir),
            "interlink_ordered": interlink(args.events, args.consumers, "ordered", workdir),
            "interlink_unordered": interlink(args.events, args.consumers, "unordered", workdir),
        }
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    base = results["baseline"]["events_per_s"]
    for name, r in results.items():
        ratio = r["events_per_s"] / base
        r["ratio"] = ratio
        print(
            f"{name:>19}: {r['events_per_s']:,.0f} events/s ({r['events']:,} handled in"
            f" {r['seconds']:.1f} s, {args.consumers} consumers; {ratio:.2f} of the baseline)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
