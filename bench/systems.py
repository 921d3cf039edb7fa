"""Systems under test: each starts itself on loopback, is configured for the workload and says
which processes are its own (so their CPU and memory are what gets measured).

Adding a configuration (Interlink on PostgreSQL, Interlink as separate roles) means writing one
more :class:`System` and listing it in :data:`SYSTEMS`; until it exists it is named in
:data:`NOT_BUILT` and the report prints its column as "n/a (not built yet)".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from bench.procs import Service, free_port, http_ok, wait_until
from bench.workload import ENVELOPES, HMAC_CONFIGS, Workload

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_KEY = "ik_admin_bench_" + "b" * 32


@dataclass(frozen=True)
class Targets:
    """Where the partners send: the ingest URL of each source, by source index."""

    ingest_urls: tuple[str, ...]


class System(Protocol):
    key: str  # as given to --only
    title: str  # the report's column header

    def start(self, workload: Workload, endpoint_urls: list[str]) -> Targets: ...

    def pids(self) -> list[int]:
        """The root processes of the system (their descendants are measured too)."""
        ...

    def describe(self) -> str: ...

    def stop(self) -> None: ...


class InterlinkAllInOne:
    """``interlink up`` on SQLite: every role in one process, the embedded default."""

    key = "interlink"
    title = "Interlink (all-in-one, SQLite)"

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._service: Service | None = None

    def start(self, workload: Workload, endpoint_urls: list[str]) -> Targets:
        self._dir = Path(tempfile.mkdtemp(prefix="interlink-bench-"))
        port = free_port()
        env = {k: v for k, v in base_env().items() if not k.startswith("INTERLINK_")}
        env.update(
            {
                "INTERLINK_HOST": "127.0.0.1",
                "INTERLINK_PORT": str(port),
                "INTERLINK_ADMIN_KEY": ADMIN_KEY,
                "INTERLINK_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
                "INTERLINK_LOG_LEVEL": "warning",
                "INTERLINK_LOG_FORMAT": "json",
            }
        )
        env.update(self._database_env())
        self._service = Service(
            "interlink",
            [str(BIN / "interlink"), "up"],
            cwd=self._dir,
            env=env,
            log=self._dir / "interlink.log",
        )
        self._service.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{base}/healthz"),
            timeout=60,
            what="interlink up",
            alive=self._service.alive,
        )
        return Targets(tuple(configure_interlink(base, ADMIN_KEY, workload, endpoint_urls)))

    def _database_env(self) -> dict[str, str]:
        return {}  # the default: SQLite in the working directory

    def pids(self) -> list[int]:
        return [self._service.pid] if self._service is not None and self._service.alive() else []

    def describe(self) -> str:
        return "1 process: `interlink up` (ingest, router, dispatcher, API), SQLite WAL fsynced"

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def log_tail(self) -> str:
        return self._service.tail() if self._service is not None else ""


class InterlinkAllInOnePostgres(InterlinkAllInOne):
    """``interlink up`` on PostgreSQL (scripts/postgres.sh's cluster): one process, a fresh
    database per run. PostgreSQL's own processes count towards its CPU and memory."""

    key = "interlink-pg"
    title = "Interlink (all-in-one, PostgreSQL)"

    def __init__(self) -> None:
        super().__init__()
        self._database = f"bench_{uuid.uuid4().hex[:12]}"

    def _database_env(self) -> dict[str, str]:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres.sh"), "createdb", self._database],
            check=True,
            capture_output=True,
        )
        # As in production: migrations as the schema owner, the process as the application
        # role, which row-level security confines (the owner is refused at start-up).
        # PostgreSQL has no default secrets key (sources' and endpoints' secrets are sealed at
        # rest): Interlink refuses to start without one.
        from interlink.storage.secrets_box import SecretBox

        return {
            "INTERLINK_DATABASE_URL": f"{POSTGRES_APP}/{self._database}",
            "INTERLINK_MIGRATION_DATABASE_URL": f"{POSTGRES}/{self._database}",
            "INTERLINK_SECRETS_KEY": SecretBox.new_key(),
        }

    def pids(self) -> list[int]:
        return super().pids() + _postgres_pids()

    def describe(self) -> str:
        return "1 process: `interlink up` on PostgreSQL 15 (asyncpg), plus the server's processes"

    def stop(self) -> None:
        super().stop()
        subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres.sh"), "dropdb", self._database],
            check=False,
            capture_output=True,
        )


POSTGRES = "postgresql://interlink_owner@127.0.0.1:5433"
POSTGRES_APP = "postgresql://interlink_app@127.0.0.1:5433"


def _postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (postmaster and backends) of the bench cluster."""
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["name", "username"])
        if p.info["username"] == "postgres" and (p.info["name"] or "").startswith("postgres")
    ]


def configure_interlink(
    base: str, admin_key: str, workload: Workload, endpoint_urls: list[str]
) -> list[str]:
    """Tenants, sources, endpoints and subscriptions over the REST API; the ingest URLs."""
    ingest: dict[int, str] = {}
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:

        def post(path: str, key: str, body: dict[str, object]) -> dict[str, object]:
            response = http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 300:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
            result: dict[str, object] = response.json()
            return result

        tenants = sorted({s.tenant for s in workload.sources})
        for tenant in tenants:
            created = post("/api/v1/tenants", admin_key, {"name": f"tenant-{tenant:02d}"})
            key = str(created["api_key"])
            for endpoint in workload.endpoints_of(tenant):
                made = post(
                    "/api/v1/endpoints",
                    key,
                    {"url": endpoint_urls[endpoint.index], "secret": endpoint.secret},
                )
                endpoint_id = _field(made, "endpoint", "id")
                post(
                    "/api/v1/subscriptions", key, {"endpoint_id": endpoint_id, "event_types": ["*"]}
                )
            for source in (s for s in workload.sources if s.tenant == tenant):
                body: dict[str, object] = {
                    "name": source.name,
                    "secrets": [source.secret],
                    "envelope": ENVELOPES[source.partner],
                }
                if source.partner == "A":
                    body["verifier"] = "standard_webhooks"
                else:
                    body["verifier"] = "hmac"
                    body["verifier_config"] = HMAC_CONFIGS[source.partner]
                made = post("/api/v1/sources", key, body)
                ingest[source.index] = _field(made, "source", "ingest_url")
    return [ingest[s.index] for s in workload.sources]


def _field(obj: dict[str, object], *path: str) -> str:
    node: object = obj
    for part in path:
        assert isinstance(node, dict), obj
        node = node[part]
    return str(node)


def base_env() -> dict[str, str]:
    """The environment of the processes the benchmark starts."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The benchmark's own packages (bench.*) are importable by the subprocesses it starts.
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return env


def _baseline() -> System:
    from bench.baselines.fastapi_celery.system import FastapiCelery

    return FastapiCelery()


# The systems the benchmark runs, in column order, made fresh for each run.
SYSTEMS: dict[str, Callable[[], System]] = {
    "interlink": InterlinkAllInOne,
    "interlink-pg": InterlinkAllInOnePostgres,
    "baseline": _baseline,
}

# Interlink configurations the issue asks to compare that do not exist yet: a column of "n/a".
NOT_BUILT: tuple[str, ...] = ("Interlink (separate roles)",)
