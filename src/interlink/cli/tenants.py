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
TenantId = Annotated[str, typer.Argument(help="The tenant's id (tnt_…).", metavar="TENANT_ID")]


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


Label = Annotated[
    str | None, typer.Option(help="A label for people to tell keys apart.", metavar="TEXT")
]
ExpiresIn = Annotated[
    int | None,
    typer.Option(
        help="Seconds until the key stops working (60 or more); none: never.", metavar="SECONDS"
    ),
]
AsTenant = Annotated[
    bool,
    typer.Option(
        "--as-tenant",
        help="Use the tenant's own key (INTERLINK_API_KEY), not the admin key.",
    ),
]
KeyId = Annotated[str, typer.Argument(help="The key's id (key_…).", metavar="KEY_ID")]
KEY_COLUMNS = ("id", "label", "prefix", "status", "created_at", "last_used_at", "expires_at")


def _key_body(label: str | None, expires_in: int | None) -> dict[str, object] | None:
    body = {"label": label, "expires_in_seconds": expires_in}
    return {k: v for k, v in body.items() if v is not None} or None


@app.command("new-key")
def new_key(
    tenant_id: TenantId, label: Label = None, expires_in: ExpiresIn = None, config: ConfigOpt = None
) -> None:
    """Create another API key for a tenant; prints it once (lists never show it)."""
    path = f"/api/v1/tenants/{q(tenant_id)}/keys"
    emit(api(config, "POST", path, admin=True, json=_key_body(label, expires_in)))


@app.command("keys")
def keys(
    tenant_id: TenantId,
    as_tenant: AsTenant = False,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List a tenant's API keys: id, label, prefix, status, created, last used; never the key."""
    path = f"/api/v1/tenants/{q(tenant_id)}/keys"
    emit(api(config, "GET", path, admin=not as_tenant)["data"], output, KEY_COLUMNS)


@app.command("label-key")
def label_key(
    tenant_id: TenantId,
    key_id: KeyId,
    label: Annotated[str, typer.Argument(help="The new label.", metavar="LABEL")],
    as_tenant: AsTenant = False,
    config: ConfigOpt = None,
) -> None:
    """Label an API key."""
    path = f"/api/v1/tenants/{q(tenant_id)}/keys/{q(key_id)}"
    emit(api(config, "PATCH", path, admin=not as_tenant, json={"label": label}))


@app.command("revoke-key")
def revoke_key(
    tenant_id: TenantId, key_id: KeyId, as_tenant: AsTenant = False, config: ConfigOpt = None
) -> None:
    """Revoke an API key: every process refuses it from now on."""
    path = f"/api/v1/tenants/{q(tenant_id)}/keys/{q(key_id)}"
    api(config, "DELETE", path, admin=not as_tenant)
    typer.echo(f"revoked {key_id}")
