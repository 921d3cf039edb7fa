"""``interlink maintenance``: partitions made ahead, retention."""

from __future__ import annotations

from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, settings
from interlink.cli.server import _run

app = typer.Typer(
    no_args_is_help=True, help="Partitions made ahead, retention (the scheduler runs it hourly)."
)


@app.command("run")
def run(
    retention_days: Annotated[
        float | None,
        typer.Option(help="Drop events older than this (default: the setting).", metavar="DAYS"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """One maintenance pass now: make the coming days' partitions and drop what is older than
    the retention. Runs against the database directly (no API), and may run while Interlink
    does (one pass at a time across processes)."""
    from interlink.storage.database import Database
    from interlink.storage.maintenance import Maintenance, owner_database

    current = settings(config, retention_days=retention_days)

    async def once() -> None:
        db = Database(current.database_url)
        maintenance = Maintenance(
            db,
            owner_database(db, current.migration_url),
            retention_days=current.retention_days,
        )
        try:
            report = await maintenance.run_once()
        finally:
            await maintenance.close()
            await db.close()
        if report.skipped:
            typer.echo("another process is running a maintenance pass; nothing done")
            return
        typer.echo(f"partitions made: {', '.join(report.created) or 'none'}")
        typer.echo(f"partitions dropped: {', '.join(report.dropped) or 'none'}")
        for name, why in report.kept:
            typer.echo(f"kept {name}: {why}")
        rows = ", ".join(f"{table} {n}" for table, n in sorted(report.rows.items()))
        typer.echo(f"rows dropped: {rows or 'none'}")

    try:
        _run(once())
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
