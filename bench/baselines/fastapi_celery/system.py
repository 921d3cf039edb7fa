"""Starts the baseline: a private Redis (scripts/redis.sh), the FastAPI app under uvicorn and a
Celery worker, each a subprocess whose CPU and memory are measured (Redis included: it is the
baseline's broker and dedupe store, as SQLite is inside Interlink's process).

Defaults, chosen for the 2-core machine and said in the report: one uvicorn process (uvloop,
httptools) and one Celery worker with a prefork pool of 2 processes, one per core
(``--baseline-concurrency`` and ``--baseline-web-workers`` change them). More pool processes did
not deliver faster here: the worker's main process, which fetches from Redis and acknowledges
each message (``acks_late``), is the narrow part, not the pool.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil

from bench.baselines.fastapi_celery.config import ENV, Config, Endpoint, Source, dump
from bench.procs import Service, free_port, http_ok, wait_until
from bench.systems import BIN, REPO, Targets, base_env
from bench.workload import TOLERANCE_SECONDS, Workload

REDIS_SCRIPT = REPO / "scripts" / "redis.sh"


class FastapiCelery:
    key = "baseline"
    title = "FastAPI + Celery + Redis"

    def __init__(
        self,
        *,
        redis_port: int | None = None,
        web_workers: int = 1,
        concurrency: int = 2,
        enqueue: str = "thread",
    ) -> None:
        self.redis_port = redis_port or int(os.environ.get("BENCH_REDIS_PORT", "6390"))
        self.web_workers = web_workers
        self.concurrency = concurrency
        self.enqueue = enqueue
        self._dir: Path | None = None
        self._web: Service | None = None
        self._worker: Service | None = None
        self._owns_redis = False

    def _redis(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.strip()

    def _redis_running(self) -> bool:
        return (
            subprocess.run(
                ["bash", str(REDIS_SCRIPT), "status", str(self.redis_port)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    def start(self, workload: Workload, endpoint_urls: list[str]) -> Targets:
        self._dir = Path(tempfile.mkdtemp(prefix="baseline-bench-"))
        self._owns_redis = not self._redis_running()
        subprocess.run(["bash", str(REDIS_SCRIPT), "start", str(self.redis_port)], check=True)
        self._redis("flushall")

        port = free_port()
        config = Config(
            redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
            tolerance_seconds=TOLERANCE_SECONDS,
            enqueue=self.enqueue,
            sources={
                f"src_{s.index:02d}": Source(s.partner, s.secret, s.tenant)
                for s in workload.sources
            },
            endpoints={
                t: [Endpoint(endpoint_urls[e.index], e.secret) for e in workload.endpoints_of(t)]
                for t in sorted({s.tenant for s in workload.sources})
            },
        )
        path = self._dir / "config.json"
        dump(config, path)
        env = base_env()
        env[ENV] = str(path)

        self._worker = Service(
            "celery",
            [
                str(BIN / "celery"),
                "-A",
                "bench.baselines.fastapi_celery.tasks",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--queues",
                "deliveries",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                # Hand tasks to pool processes as they come (Celery's default is "fair": only to
                # idle ones). For many short I/O tasks this cut p99 latency ~5x here, same CPU.
                "-Odefault",
                "--hostname",
                f"bench-{port}@localhost",
            ],
            cwd=REPO,
            env=env,
            log=self._dir / "celery.log",
            stop_timeout=15,
        )
        self._worker.start()
        self._web = Service(
            "uvicorn",
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "bench.baselines.fastapi_celery.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(self.web_workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-keep-alive",
                "30",
            ],
            cwd=REPO,
            env=env,
            log=self._dir / "uvicorn.log",
        )
        self._web.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{base}/healthz"), timeout=60, what="uvicorn", alive=self._web.alive
        )
        worker = self._worker
        wait_until(
            lambda: len(psutil.Process(worker.pid).children()) >= self.concurrency,
            timeout=60,
            what="celery worker pool",
            alive=worker.alive,
        )
        return Targets(tuple(f"{base}/in/src_{s.index:02d}" for s in workload.sources))

    def pids(self) -> list[int]:
        pids = [s.pid for s in (self._web, self._worker) if s is not None and s.alive()]
        pidfile = Path(f"/tmp/interlink-bench-redis-{self.redis_port}/redis.pid")
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pidfile.read_text().strip()))
        return pids

    def describe(self) -> str:
        return (
            f"uvicorn x{self.web_workers} (uvloop, httptools) + Celery prefork x{self.concurrency}"
            f" (acks_late) + Redis {self._redis_version()} (no persistence); enqueue {self.enqueue}"
        )

    def _redis_version(self) -> str:
        try:
            for line in self._redis("info", "server").splitlines():
                if line.startswith("redis_version:"):
                    return line.split(":", 1)[1]
        except (subprocess.SubprocessError, OSError):
            pass
        return "?"

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {s.name} ---\n{s.tail()}" for s in (self._web, self._worker) if s is not None
        )

    def stop(self) -> None:
        for service in (self._web, self._worker):
            if service is not None:
                service.stop()
        if self._owns_redis:
            subprocess.run(
                ["bash", str(REDIS_SCRIPT), "stop", str(self.redis_port)],
                check=False,
                capture_output=True,
            )
            self._owns_redis = False
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
