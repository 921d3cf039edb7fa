"""``interlink connections``: OAuth connections to partner APIs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, q, settings

app = typer.Typer(no_args_is_help=True, help="OAuth connections to partner APIs.")

COLUMNS = ("id", "partner", "flow", "status", "expires_at", "last_error")
ConnectionId = Annotated[
    str, typer.Argument(help="The connection's id (conn_…).", metavar="CONNECTION_ID")
]


@app.command("create")
def create(
    partner: Annotated[str, typer.Argument(help="The partner, e.g. gamma_stays.")],
    token_url: Annotated[
        str, typer.Option(help="The partner's OAuth2 token endpoint.", metavar="URL")
    ],
    client_id: Annotated[str, typer.Option(help="OAuth2 client id.", metavar="ID")],
    client_secret: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, help="OAuth2 client secret (prompted).", metavar="SECRET"
        ),
    ],
    flow: Annotated[
        str, typer.Option(help="client_credentials | authorization_code.", metavar="FLOW")
    ] = "client_credentials",
    scope: Annotated[
        list[str] | None, typer.Option(help="Scope(s) to ask for.", metavar="SCOPE")
    ] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option(help="authorization_code: the refresh token consent gave.", metavar="TOKEN"),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="authorization_code: an authorization code to exchange.", metavar="CODE"),
    ] = None,
    redirect_uri: Annotated[
        str | None, typer.Option(help="The code's redirect URI.", metavar="URI")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a connection; its first token is fetched at once (the secret is never shown)."""
    body: dict[str, Any] = {
        "partner": partner,
        "flow": flow,
        "token_url": token_url,
        "client_id": client_id,
        "client_secret": client_secret,
        "scopes": scope or [],
    }
    for name, value in (
        ("refresh_token", refresh_token),
        ("authorization_code", code),
        ("redirect_uri", redirect_uri),
    ):
        if value:
            body[name] = value
    emit(api(config, "POST", "/api/v1/connections", json=body))


@app.command("list")
def list_(output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """List connections (never their secrets or tokens)."""
    emit(api(config, "GET", "/api/v1/connections")["data"], output, COLUMNS)


@app.command("show")
def show(connection_id: ConnectionId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Status (healthy, expiring, failed), expiry, refresh counts and the last error."""
    emit(api(config, "GET", f"/api/v1/connections/{q(connection_id)}"), output)


@app.command("refresh")
def refresh(connection_id: ConnectionId, config: ConfigOpt = None) -> None:
    """Refresh the token now; prints the connection afterwards."""
    emit(api(config, "POST", f"/api/v1/connections/{q(connection_id)}/refresh"))


@app.command("delete")
def delete(connection_id: ConnectionId, config: ConfigOpt = None) -> None:
    """Delete a connection and its stored secret and tokens."""
    api(config, "DELETE", f"/api/v1/connections/{q(connection_id)}")
    typer.echo(f"deleted {connection_id}")


@app.command("new-key")
def new_key() -> None:
    """Print a new secrets key (for INTERLINK_SECRETS_KEY)."""
    from interlink.storage.secrets_box import SecretBox

    typer.echo(SecretBox.new_key())


@app.command("rotate-key")
def rotate_key(config: ConfigOpt = None) -> None:
    """Re-encrypt every stored secret and token under the first key of INTERLINK_SECRETS_KEY.

    Put the new key first and keep the old ones after it; once this has run, the old keys can
    go. Runs against the database directly (no API), and may run while Interlink does.
    """
    from interlink.storage.connections import Connections
    from interlink.storage.database import Database
    from interlink.storage.secrets_box import SecretBox, SecretUnreadable, secrets_keys

    current = settings(config)
    try:
        box = SecretBox(secrets_keys(current.secrets_key))
    except ValueError as exc:
        typer.secho(f"secrets_key: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None

    async def rotate() -> int:
        db = Database(current.database_url)
        try:
            return await Connections(db, box).reencrypt()
        finally:
            await db.close()

    import asyncio

    try:
        count = asyncio.run(rotate())
    except SecretUnreadable as exc:
        typer.secho(f"{exc}: keep the old key in the list", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-encrypted {count} connection(s) under the first key")
