"""``interlink quarantine``: partner events not normalized, or held back."""

from __future__ import annotations

from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, q

app = typer.Typer(
    no_args_is_help=True, help="Partner events that could not be normalized, or were held back."
)
COLUMNS = ("id", "stage", "source_id", "reason", "created_at")


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="open | resolved.", metavar="STATUS")] = "open",
    stage: Annotated[
        str | None, typer.Option(help="e.g. mapping, schema, held.", metavar="STAGE")
    ] = None,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List quarantine entries, newest first, with their reasons."""
    params = {k: v for k, v in {"status": status, "stage": stage}.items() if v}
    emit(api(config, "GET", "/api/v1/quarantine", params=params)["data"], output, COLUMNS)


@app.command("reprocess")
def reprocess(
    entry_id: Annotated[str, typer.Argument(help="The entry's id (qtn_…).")],
    config: ConfigOpt = None,
) -> None:
    """Normalize a quarantined event again with its source's kit as it is now."""
    emit(api(config, "POST", f"/api/v1/quarantine/{q(entry_id)}/reprocess"))
