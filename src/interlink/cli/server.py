"""Running Interlink: ``up`` (every role, optionally detached), ``run`` (some roles), ``wait``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interlink.cli._api import ConfigOpt, fail, settings
from interlink.config import STATE_DIR

if TYPE_CHECKING:
    from interlink.app import Interlink

HostOpt = Annotated[str | None, typer.Option(help="Address to listen on.", metavar="HOST")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on.", metavar="PORT")]
DatabaseOpt = Annotated[str | None, typer.Option("--db", help="Database URL.", metavar="URL")]
TimeoutOpt = Annotated[
    float, typer.Option(help="Seconds to wait for the server to be ready.", metavar="SECONDS")
]

LOG_FILE = STATE_DIR / "interlink.log"
PID_FILE = STATE_DIR / "interlink.pid"


def _run(coro: Any) -> None:
    import asyncio

    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(coro)


def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also run a simulated partner and receivers.")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            "-d",
            help=f"Run in the background: return once it is ready (logs in {LOG_FILE}).",
        ),
    ] = False,
    timeout: TimeoutOpt = 60.0,
    host: HostOpt = None,
    port: PortOpt = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run every role in one process: ingest, router, dispatcher, scheduler and the API."""
    current = settings(config, host=host, port=port, database_url=database_url)
    if detach:
        if demo:
            raise fail("--demo shows a live view: run it in the foreground", 2)
        forwarded = [
            *(["--host", host] if host else []),
            *(["--port", str(port)] if port else []),
            *(["--db", database_url] if database_url else []),
            *(["--config", config] if config else []),
        ]
        _detach(current.public_url, timeout, forwarded)
        return
    from interlink.app import AlreadyRunning, CannotListen, serve
    from interlink.storage.rls import UnsafeDatabase
    from interlink.storage.secrets_box import SecretsKeyRequired

    try:
        if demo:
            from interlink.demo.runner import run_demo

            _run(run_demo(current))
        else:
            from interlink.observability.logging import configure as configure_logging

            configure_logging(current.log_format, current.log_level)

            async def started(system: Interlink) -> None:
                # Only once it listens: a bind or lock failure must not follow a promise.
                url = current.public_url
                typer.echo(f"Interlink on {url} (API docs: {url}/docs)")

            _run(serve(current, on_started=started))
    except (AlreadyRunning, CannotListen) as exc:
        raise fail(str(exc)) from None
    except (UnsafeDatabase, SecretsKeyRequired) as exc:
        raise fail(f"Interlink refuses to run: {exc}") from None
    except KeyboardInterrupt:
        pass


def _detach(url: str, timeout: float, args: list[str]) -> None:
    """Start ``interlink up`` in a new session, its output in LOG_FILE, and wait until ready."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_FILE, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own arguments
            [sys.executable, "-m", "interlink", "up", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if process.poll() is not None:
            tail = LOG_FILE.read_text(errors="replace").splitlines()[-5:]
            raise fail(
                f"Interlink exited ({process.returncode}) before it was ready; {LOG_FILE}:\n"
                + "\n".join(tail)
            )
        if time.monotonic() > deadline:
            raise fail(
                f"Interlink (pid {process.pid}) not ready after {timeout:g} s; see {LOG_FILE}"
            )
        time.sleep(0.1)
    PID_FILE.write_text(f"{process.pid}\n")
    typer.echo(
        f"Interlink on {url} (API docs: {url}/docs), pid {process.pid}, logs in {LOG_FILE}; "
        f"stop it with: kill $(cat {PID_FILE})"
    )


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait(
    timeout: TimeoutOpt = 30.0,
    config: ConfigOpt = None,
) -> None:
    """Wait until Interlink answers ready (INTERLINK_API_URL, or the configured address)."""
    url = os.environ.get("INTERLINK_API_URL", settings(config).public_url)
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if time.monotonic() > deadline:
            raise fail(f"Interlink at {url} not ready after {timeout:g} s")
        time.sleep(0.2)
    typer.echo(f"Interlink at {url} is ready")


def run(
    role: Annotated[
        list[str],
        typer.Option(
            help="ingress, router, dispatcher, scheduler, api or all; repeat for several.",
            metavar="ROLE",
        ),
    ],
    host: HostOpt = None,
    port: PortOpt = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run some roles (on PostgreSQL): any number of processes of each share the work."""
    from interlink.app import (
        ALL_ROLES,
        AlreadyRunning,
        CannotListen,
        Role,
        RolesNeedPostgres,
        serve,
    )
    from interlink.observability.logging import configure as configure_logging
    from interlink.storage.rls import UnsafeDatabase
    from interlink.storage.secrets_box import SecretsKeyRequired

    current = settings(config, host=host, port=port, database_url=database_url)
    configure_logging(current.log_format, current.log_level)
    try:
        roles = ALL_ROLES if "all" in role else frozenset(Role(r) for r in role)
    except ValueError:
        names = ", ".join([*sorted(Role), "all"])
        raise fail(f"--role: one of {names}, not {', '.join(role)}", 2) from None

    async def started(system: Interlink) -> None:
        typer.echo(f"Interlink ({', '.join(sorted(roles))}) on {current.public_url}")

    try:
        _run(serve(current, roles=roles, on_started=started))
    except (AlreadyRunning, CannotListen, RolesNeedPostgres) as exc:
        raise fail(str(exc)) from None
    except (UnsafeDatabase, SecretsKeyRequired) as exc:
        raise fail(f"Interlink refuses to run: {exc}") from None
    except KeyboardInterrupt:
        pass
