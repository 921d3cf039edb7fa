"""``interlink tenants``: tenants and their API keys (with the admin key)."""

from __future__ import annotations

from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, q

app = typer.Typer(
    no_args_is_help=True,
    help="Tenants and their API keys (admin key: INTERLINK_ADMIN_KEY or .interlink/admin.key).",
)

COLUMNS = ("id", "name", "created_at")
TenantId = Annotated[str, typer.Argument(help="The tenant's id (ten_…).", metavar="TENANT_ID")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for people to read.")],
    config: ConfigOpt = None,
) -> None:
    """Create a tenant; prints its first API key once."""
    emit(api(config, "POST", "/api/v1/tenants", admin=True, json={"name": name}))


@app.command("list")
def list_(output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """List tenants."""
    emit(api(config, "GET", "/api/v1/tenants", admin=True)["data"], output, COLUMNS)


@app.command("show")
def show(tenant_id: TenantId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one tenant."""
    emit(api(config, "GET", f"/api/v1/tenants/{q(tenant_id)}", admin=True), output)


@app.command("new-key")
def new_key(tenant_id: TenantId, config: ConfigOpt = None) -> None:
    """Create another API key for a tenant; prints it once (keys are never listed)."""
    emit(api(config, "POST", f"/api/v1/tenants/{q(tenant_id)}/keys", admin=True))
