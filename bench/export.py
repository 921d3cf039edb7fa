"""Export in bounded memory: ``python -m bench.export [--events N]`` (default 1,000,000).

``interlink up`` on SQLite with N events preloaded (each with a delivery and an attempt, as
after a normal day), then ``interlink export`` of the whole window to a file, over HTTP. It
samples the server's and the CLI's resident memory while the export streams and checks the
file: N lines, in event-id order (so each event once), every one of the window. Issue target:
peak RSS growth <= 50 MB. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.procs import Service, free_port, http_ok, wait_until
from bench.systems import ADMIN_KEY, BIN, base_env

_PRELOAD = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
INSERT INTO {table} SELECT {columns} FROM n
"""
_EVENT = (
    "'evt_' || printf('%012x', :t0ms + i) || printf('%020x', i), :tenant, :source, 'k' || i,"
    " 'booking.created', 'key-' || (i % 500), (:t0ms + i) / 1000.0, NULL,"
    ' CAST(\'{"n": \' || i || \', "guest": "someone@example.com"}\' AS BLOB),'
    " CAST('{}' AS BLOB), '{}', NULL, 'partner', NULL, NULL"
)
_DELIVERY = (
    "'dlv_' || printf('%032x', i), :tenant, 'evt_' || printf('%012x', :t0ms + i)"
    " || printf('%020x', i), i + 1, 'ep_bench', 'key-' || (i % 500), 'succeeded', 1, NULL,"
    " NULL, 200, NULL, (:t0ms + i) / 1000.0, (:t0ms + i) / 1000.0"
)
_ATTEMPT = (
    "'att_' || printf('%032x', i), :tenant, 'dlv_' || printf('%032x', i), 1,"
    " (:t0ms + i) / 1000.0, 12.5, 'succeeded', 200, NULL, 'ok'"
)


def _preload(db: Path, tenant: str, source: str, count: int, t0ms: int) -> float:
    started = time.monotonic()
    with sqlite3.connect(db) as conn:
        values = {"count": count, "tenant": tenant, "source": source, "t0ms": t0ms}
        for table, columns in (
            (
                "events (id, tenant_id, source_id, idempotency_key, type, key,"
                " received_at, occurred_at, data, raw, headers, trace_context,"
                " origin, derived_from, schema_version)",
                _EVENT,
            ),
            (
                "deliveries (id, tenant_id, event_id, event_seq, endpoint_id, key,"
                " status, attempt_count, next_attempt_at, lease_until,"
                " last_status_code, last_error, created_at, updated_at)",
                _DELIVERY,
            ),
            ("attempts", _ATTEMPT),
        ):
            conn.execute(_PRELOAD.format(table=table, columns=columns), values)
    return time.monotonic() - started


class Sampler(threading.Thread):
    """The peak resident memory of a process, sampled every 50 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="interlink-export-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in base_env().items() if not k.startswith("INTERLINK_")}
    env |= {
        "INTERLINK_PORT": str(port),
        "INTERLINK_ADMIN_KEY": ADMIN_KEY,
        "INTERLINK_LOG_LEVEL": "warning",
        "INTERLINK_VOLUME_MONITOR": "false",
    }

    def up() -> Service:
        service = Service(
            "interlink",
            [str(BIN / "interlink"), "up"],
            cwd=work,
            env=env,
            log=work / "interlink.log",
        )
        service.start()
        wait_until(
            lambda: http_ok(f"{base}/healthz"), timeout=60, what="interlink up", alive=service.alive
        )
        return service

    try:
        service = up()
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        made = httpx.post(f"{base}/api/v1/tenants", json={"name": "bench"}, headers=admin).json()
        key, tenant = made["api_key"], made["tenant"]["id"]
        auth = {"Authorization": f"Bearer {key}"}
        source = httpx.post(f"{base}/api/v1/sources", json={"name": "pms"}, headers=auth).json()
        service.stop()
        t0ms = int(time.time() * 1000) - args.events - 60_000
        took = _preload(
            work / ".interlink" / "interlink.db", tenant, source["source"]["id"], args.events, t0ms
        )
        print(f"preloaded {args.events:,} events with deliveries and attempts in {took:.0f} s")

        service = up()
        server = Sampler(service.pid)
        time.sleep(1.0)  # settled after start-up
        server.peak = before = server.process.memory_info().rss
        server.start()
        out = work / "export.ndjson"
        started = time.monotonic()
        cli = subprocess.Popen(
            [
                str(BIN / "interlink"),
                "export",
                "--since",
                str(t0ms / 1000 - 1),
                "--output",
                str(out),
            ],
            cwd=work,
            env=env | {"INTERLINK_API_URL": base, "INTERLINK_API_KEY": key},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        client = Sampler(cli.pid)
        client.start()
        output, _ = cli.communicate(timeout=3600)
        elapsed = time.monotonic() - started
        server.done.set()
        client.done.set()
        assert cli.returncode == 0, output.decode()

        lines, last = 0, ""
        with out.open("rb") as f:
            for raw in f:
                event_id = json.loads(raw)["event"]["id"]
                assert event_id > last, f"line {lines + 1}: out of order or repeated"
                last, lines = event_id, lines + 1
        assert lines == args.events, f"{lines:,} lines for {args.events:,} events"
        mb = 1024 * 1024
        print(
            json.dumps(
                {
                    "events": args.events,
                    "seconds": round(elapsed, 1),
                    "events_per_s": round(args.events / elapsed),
                    "file_mb": round(out.stat().st_size / mb, 1),
                    "server_rss_before_mb": round(before / mb, 1),
                    "server_rss_growth_peak_mb": round((server.peak - before) / mb, 1),
                    "cli_rss_peak_mb": round(client.peak / mb, 1),
                },
                indent=2,
            )
        )
        service.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
