"""``interlink segments``: named CEL predicates that filters use as segment("name")."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, q

app = typer.Typer(no_args_is_help=True, help='Named predicates filters use as segment("name").')

COLUMNS = ("name", "expression", "description", "updated_at")
Name = Annotated[str, typer.Argument(help="The segment's name (a-z, 0-9, -).", metavar="NAME")]
Description = Annotated[
    str | None, typer.Option("--description", help="What it is for.", metavar="TEXT")
]


@app.command("create")
def create(
    name: Name,
    expression: Annotated[
        str, typer.Argument(help="A CEL predicate over the event.", metavar="CEL")
    ],
    description: Description = None,
    config: ConfigOpt = None,
) -> None:
    """Create a segment."""
    body = {"name": name, "expression": expression, "description": description or ""}
    emit(api(config, "POST", "/api/v1/segments", json=body))


@app.command("list")
def list_(output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """List segments."""
    emit(api(config, "GET", "/api/v1/segments")["data"], output, COLUMNS)


@app.command("show")
def show(name: Name, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one segment."""
    emit(api(config, "GET", f"/api/v1/segments/{q(name)}"), output)


@app.command("update")
def update(
    name: Name,
    expression: Annotated[
        str | None, typer.Option("--expression", help="The new predicate.", metavar="CEL")
    ] = None,
    description: Description = None,
    config: ConfigOpt = None,
) -> None:
    """Change a segment: every subscription whose filter uses it is re-targeted."""
    body: dict[str, Any] = {
        k: v for k, v in (("expression", expression), ("description", description)) if v is not None
    }
    emit(api(config, "PATCH", f"/api/v1/segments/{q(name)}", json=body))


@app.command("delete")
def delete(name: Name, config: ConfigOpt = None) -> None:
    """Delete a segment no filter uses."""
    api(config, "DELETE", f"/api/v1/segments/{q(name)}")
    typer.echo(f"deleted {name}")
