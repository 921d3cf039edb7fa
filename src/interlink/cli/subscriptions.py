"""``interlink subscriptions``: which event types go to which endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, params, q

app = typer.Typer(no_args_is_help=True, help="Which event types go to which endpoint.")

COLUMNS = ("id", "endpoint_id", "event_types", "created_at")
SubscriptionId = Annotated[
    str, typer.Argument(help="The subscription's id (sub_…).", metavar="SUBSCRIPTION_ID")
]


@app.command("create")
def create(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint to send them to (ep_…).")],
    event_type: Annotated[
        list[str],
        typer.Option(
            "--type", help="Pattern, e.g. booking.* or *; repeat for several.", metavar="PATTERN"
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Subscribe an endpoint to event types."""
    body = {"endpoint_id": endpoint_id, "event_types": event_type}
    emit(api(config, "POST", "/api/v1/subscriptions", json=body))


@app.command("list")
def list_(
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Only this endpoint's.", metavar="ENDPOINT_ID")
    ] = None,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List subscriptions."""
    found = api(config, "GET", "/api/v1/subscriptions", params=params(endpoint_id=endpoint))
    emit(found["data"], output, COLUMNS)


@app.command("show")
def show(
    subscription_id: SubscriptionId, output: OutputOpt = None, config: ConfigOpt = None
) -> None:
    """Show one subscription."""
    emit(api(config, "GET", f"/api/v1/subscriptions/{q(subscription_id)}"), output)


@app.command("delete")
def delete(subscription_id: SubscriptionId, config: ConfigOpt = None) -> None:
    """Delete a subscription: its endpoint gets no new deliveries for those types."""
    api(config, "DELETE", f"/api/v1/subscriptions/{q(subscription_id)}")
    typer.echo(f"deleted {subscription_id}")
