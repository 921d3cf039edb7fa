"""The outbox relay, events/s: ``python -m bench.outbox [--events N] [--json F]``.

Both sides drain the same outbox (``interlink_outbox`` in a SQLite file of the service: N
committed rows over 500 keys, 50 a transaction) in the same run, on the same machine:

* **Interlink**: the SDK's relay (``interlink_client.outbox.relay.Relay``, what
  ``interlink-outbox relay`` runs) ships batches of 500 rows to ``interlink up``'s
  ``/api/v1/events/batch`` over loopback HTTP (each answered once committed and fsynced,
  deduped by ``outbox-<row id>``), then marks them sent.
* **Baseline** (Celery + Redis): the relay a team writes without a publish API: per batch of
  500 rows, one Redis pipeline of ``SET NX EX`` (the dedupe of a row shipped again), one Celery
  ``deliver`` task per new row to the Redis broker (``apply_async``), then marks them sent.

Nothing is subscribed on either side: shipping the outbox is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.procs import install_handlers, stop_all
from bench.publish import celery_redis, interlink_up
from interlink_client import AsyncInterlink
from interlink_client.outbox import create_table, outbox, publish
from interlink_client.outbox.relay import Relay, engine_for

BATCH = 500
KEYS = 500
PER_TRANSACTION = 50


def fill(path: Path, n: int) -> str:
    """An outbox of ``n`` committed rows in a new SQLite file: its URL."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        create_table(conn)
    for start in range(0, n, PER_TRANSACTION):
        with engine.begin() as conn:
            for i in range(start, min(start + PER_TRANSACTION, n)):
                data = {"booking_id": f"b-{i}", "nights": 1 + i % 7, "guest": {"name": "A. Guest"}}
                publish(conn, "booking.confirmed", data, key=f"listing-{i % KEYS}")
    engine.dispose()
    return url


def interlink(url: str) -> dict[str, Any]:
    async def drain(base: str, key: str) -> tuple[int, float]:
        engine = engine_for(url)
        try:
            async with AsyncInterlink(base, key) as client:
                relay = Relay(engine, client, batch_size=BATCH)
                started = time.perf_counter()
                shipped = await relay.drain()
                return shipped, time.perf_counter() - started
        finally:
            await engine.dispose()

    with interlink_up("outbox") as (base, key):
        shipped, seconds = asyncio.run(drain(base, key))
    return {"events": shipped, "seconds": seconds, "events_per_s": shipped / seconds}


def baseline(url: str) -> dict[str, Any]:
    with celery_redis("outbox") as redis_url:
        import redis

        from bench.baselines.fastapi_celery.tasks import deliver

        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        engine = sa.create_engine(url)
        unsent = (
            sa.select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(BATCH)
        )
        shipped = 0
        try:
            started = time.perf_counter()
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(unsent).all()
                if not rows:
                    break
                pipe = client.pipeline(transaction=False)
                for r in rows:
                    pipe.set(f"dedupe:outbox:{r.id}", "1", nx=True, ex=7 * 24 * 3600)
                for r, first in zip(rows, pipe.execute(), strict=True):
                    if first:
                        payload = json.dumps({"type": r.event_type, "data": json.loads(r.data)})
                        deliver.apply_async(
                            args=("http://127.0.0.1:9/none", "whsec_x", f"outbox-{r.id}", payload),
                            queue="outbox-bench",  # no worker: shipping is what is measured
                        )
                with engine.begin() as conn:
                    ids = [r.id for r in rows]
                    conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(sent_at=1.0))
                shipped += len(rows)
            seconds = time.perf_counter() - started
        finally:
            client.flushdb()
            client.close()
            engine.dispose()
    return {"events": shipped, "seconds": seconds, "events_per_s": shipped / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    install_handlers()
    workdir = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    try:
        results = {
            "baseline": baseline(fill(workdir / "baseline.db", args.events)),
            "interlink": interlink(fill(workdir / "interlink.db", args.events)),
        }
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    results["ratio"] = results["interlink"]["events_per_s"] / results["baseline"]["events_per_s"]
    for name in ("interlink", "baseline"):
        r = results[name]
        print(
            f"{name:>9}: {r['events_per_s']:,.0f} events/s ({r['events']:,} outbox rows in "
            f"batches of {BATCH}, {r['seconds']:.1f} s)"
        )
    print(f"    ratio: {results['ratio']:.2f} (Interlink / baseline)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
