"""Publishing events of one's own, events/s: ``python -m bench.publish [--events N] [--json F]``.

Both sides in the same run, on the same machine, with the same events: N events in batches of
100, one in ten reusing an idempotency key published before, from ``--concurrency`` senders.

* **Interlink**: ``interlink up`` (SQLite, the embedded default) as its own process; the
  senders POST each batch to ``/api/v1/events/batch`` over loopback HTTP with a tenant's key.
  A batch is answered once it is committed and fsynced (one transaction per batch, group
  commit across concurrent batches), validated, deduped per tenant.
* **Baseline** (FastAPI + Celery + Redis, bench/baselines/fastapi_celery): what a team without
  a publish API does in its service: per batch, dedupe each idempotency key with Redis
  ``SET NX EX`` (one pipeline), then publish one Celery ``deliver`` task per new event to the
  Redis broker (``apply_async``), from the service's own threads; no HTTP hop. Redis runs
  without persistence (scripts/redis.sh), so an answered publish there is not on disk.

Nothing is subscribed on either side: what is measured is publishing, not delivery (the
router still runs in Interlink, finding no subscription). Redis is scripts/redis.sh's, on
127.0.0.1:6390 (``BENCH_REDIS_PORT``), started if it is not running; the benchmark uses its
database 3 and empties it after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.procs import Service, free_port, http_ok, install_handlers, stop_all, wait_until
from bench.systems import ADMIN_KEY, BIN, REPO, base_env

BATCH = 100
REPEATS = 0.10
REDIS_DB = 3


def events(n: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """``n`` events in batches of BATCH; one in ten reuses an earlier idempotency key."""
    rng = random.Random(seed)
    keys: list[str] = []
    out = []
    for i in range(n):
        if keys and rng.random() < REPEATS:
            key = rng.choice(keys)
        else:
            key = f"bk-{i:07d}"
            keys.append(key)
        out.append(
            {
                "type": "booking.confirmed",
                "data": {"booking_id": key, "nights": 1 + i % 7, "guest": {"name": "A. Guest"}},
                "key": f"listing-{i % 500}",
                "idempotency_key": key,
            }
        )
    return [out[i : i + BATCH] for i in range(0, n, BATCH)]


# Interlink ---------------------------------------------------------------------------------------


async def _post_all(base: str, key: str, batches: list[list[dict[str, Any]]], senders: int) -> int:
    """Sends every batch (each must be answered 202); returns how many events were new."""
    queue = list(reversed(batches))
    new = 0
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal new
        while queue:
            body = json.dumps({"events": queue.pop()}).encode()
            async with session.post(f"{base}/api/v1/events/batch", data=body) as r:
                answer = await r.json(content_type=None)
                if r.status != 202:
                    raise RuntimeError(f"publish answered {r.status}: {answer}")
                new += sum(not a["duplicate"] for a in answer["data"])

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return new


@contextlib.contextmanager
def interlink_up(name: str) -> Iterator[tuple[str, str]]:
    """``interlink up`` (SQLite) in a fresh directory: its base URL and a new tenant's key."""
    workdir = Path(tempfile.mkdtemp(prefix=f"interlink-{name}-bench-"))
    port = free_port()
    env = {k: v for k, v in base_env().items() if not k.startswith("INTERLINK_")}
    env.update(
        {
            "INTERLINK_HOST": "127.0.0.1",
            "INTERLINK_PORT": str(port),
            "INTERLINK_ADMIN_KEY": ADMIN_KEY,
            "INTERLINK_LOG_LEVEL": "warning",
            "INTERLINK_LOG_FORMAT": "json",
        }
    )
    service = Service(
        "interlink", [str(BIN / "interlink"), "up"], cwd=workdir, env=env, log=workdir / "log"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        service.start()
        wait_until(lambda: http_ok(f"{base}/healthz"), timeout=60, what="interlink up")
        made = httpx.post(
            f"{base}/api/v1/tenants",
            json={"name": name},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        made.raise_for_status()
        yield base, made.json()["api_key"]
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def interlink(batches: list[list[dict[str, Any]]], senders: int) -> dict[str, Any]:
    with interlink_up("publisher") as (base, key):
        asyncio.run(_post_all(base, key, batches[:5], senders))  # warm-up (not counted)
        started = time.perf_counter()
        new = asyncio.run(_post_all(base, key, batches[5:], senders))
        seconds = time.perf_counter() - started
    sent = sum(len(b) for b in batches[5:])
    return {"events": sent, "new": new, "seconds": seconds, "events_per_s": sent / seconds}


# Baseline ----------------------------------------------------------------------------------------


def _redis_script(*args: str) -> int:
    script = REPO / "scripts" / "redis.sh"
    return subprocess.run(["bash", str(script), *args], capture_output=True, check=False).returncode


@contextlib.contextmanager
def celery_redis(name: str) -> Iterator[str]:
    """Redis (scripts/redis.sh's, started if it is not running) configured as the baseline's
    Celery broker: its URL."""
    port = os.environ.get("BENCH_REDIS_PORT", "6390")
    owns_redis = _redis_script("status", port) != 0
    if owns_redis and _redis_script("start", port) != 0:
        raise RuntimeError(f"cannot start Redis on 127.0.0.1:{port} (scripts/redis.sh)")
    url = f"redis://127.0.0.1:{port}/{REDIS_DB}"
    workdir = Path(tempfile.mkdtemp(prefix=f"baseline-{name}-bench-"))
    try:
        from bench.baselines.fastapi_celery.config import ENV, Config, dump

        dump(Config(redis_url=url, tolerance_seconds=300, sources={}, endpoints={}), workdir / "c")
        os.environ[ENV] = str(workdir / "c")
        yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if owns_redis:
            _redis_script("stop", port)


def baseline(batches: list[list[dict[str, Any]]], senders: int) -> dict[str, Any]:
    with celery_redis("publish") as url:
        return _publish_with_celery(url, batches, senders)


def _publish_with_celery(
    url: str, batches: list[list[dict[str, Any]]], senders: int
) -> dict[str, Any]:
    import redis

    from bench.baselines.fastapi_celery.tasks import deliver

    client = redis.Redis.from_url(url)
    client.flushdb()
    queue = "publish-bench"  # no worker consumes it: publishing is what is measured
    lock = threading.Lock()
    counted = {"new": 0}

    def publish_batch(batch: list[dict[str, Any]]) -> None:
        pipe = client.pipeline(transaction=False)
        for e in batch:
            pipe.set(f"dedupe:api:{e['idempotency_key']}", "1", nx=True, ex=7 * 24 * 3600)
        firsts = pipe.execute()
        new = 0
        for e, first in zip(batch, firsts, strict=True):
            if first:
                payload = json.dumps({"type": e["type"], "data": e["data"]}, separators=(",", ":"))
                deliver.apply_async(
                    args=("http://127.0.0.1:9/none", "whsec_x", e["idempotency_key"], payload),
                    queue=queue,
                )
                new += 1
        with lock:
            counted["new"] += new

    def run(part: list[list[dict[str, Any]]]) -> None:
        for batch in part:
            publish_batch(batch)

    def timed(work: list[list[dict[str, Any]]]) -> float:
        threads = [threading.Thread(target=run, args=(work[i::senders],)) for i in range(senders)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    try:
        timed(batches[:5])  # warm-up: connections, Celery's producer pool (not counted)
        counted["new"] = 0
        seconds = timed(batches[5:])
        queued = int(client.llen(queue))
    finally:
        client.flushdb()
        client.close()
    sent = sum(len(b) for b in batches[5:])
    return {
        "events": sent,
        "new": counted["new"],
        "queued": queued,
        "seconds": seconds,
        "events_per_s": sent / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=4, help="senders on each side")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    install_handlers()
    batches = events(args.events)
    try:
        results = {
            "baseline": baseline(batches, args.concurrency),
            "interlink": interlink(batches, args.concurrency),
        }
    finally:
        stop_all()
    results["ratio"] = results["interlink"]["events_per_s"] / results["baseline"]["events_per_s"]
    for name in ("interlink", "baseline"):
        r = results[name]
        print(
            f"{name:>9}: {r['events_per_s']:,.0f} events/s ({r['events']:,} events in batches of "
            f"{BATCH}, {r['new']:,} new, {r['seconds']:.1f} s, {args.concurrency} senders)"
        )
    print(f"    ratio: {results['ratio']:.2f} (Interlink / baseline)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
