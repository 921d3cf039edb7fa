"""Interlink: verified webhook ingest, routing and signed delivery.

Run it with `interlink up`; manage it over its API with the other commands (a tenant's key in
INTERLINK_API_KEY, the admin key for tenants).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import typer.core

from interlink.cli import (
    backup,
    connections,
    deliveries,
    endpoints,
    events,
    export,
    jobs,
    maintenance,
    quarantine,
    secrets,
    segments,
    server,
    sources,
    subscriptions,
    tenants,
)
from interlink.cli.events import format_timeline
from interlink.cli.jobs import format_job

__all__ = ["app", "format_job", "format_timeline", "main"]


def _metavar_only(self: typer.core.TyperArgument, ctx: object) -> str | None:
    return None


# Typer prints an argument's Python type beside its metavar in help ("SOURCE <str>"); every
# argument here has a metavar that says what it takes, so the type is noise.
typer.core.TyperArgument.display_type_rich = _metavar_only  # type: ignore[method-assign,assignment]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"interlink {version('interlink')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


app.command("up")(server.up)
app.command("wait")(server.wait)
app.command("run")(server.run)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)
app.command("export")(export.export)
app.add_typer(tenants.app, name="tenants")
app.add_typer(sources.app, name="sources")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(segments.app, name="segments")
app.add_typer(events.app, name="events")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(jobs.app, name="jobs")
app.add_typer(secrets.app, name="secrets")
app.add_typer(connections.app, name="connections")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(maintenance.app, name="maintenance")


def main() -> None:
    try:
        app(prog_name="interlink")
    except BrokenPipeError:  # pragma: no cover - `interlink events tail | head`
        sys.exit(0)
