"""``interlink connections``: OAuth connections to partner APIs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlink.cli import secrets
from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, q

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


@app.command("new-key", hidden=True)
def new_key() -> None:
    """Print a new secrets key (now `interlink secrets new-key`)."""
    secrets.new_key()


@app.command("rotate-key", hidden=True)
def rotate_key(config: ConfigOpt = None) -> None:
    """Re-encrypt every stored secret under the first key (now `interlink secrets rotate-key`)."""
    secrets.rotate_key(config=config)
