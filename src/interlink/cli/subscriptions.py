"""``interlink subscriptions``: which event types go to which endpoint, with an optional
content filter (CEL) and transformation (JSONata); previews (docs/routing.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, params, q

app = typer.Typer(no_args_is_help=True, help="Which event types go to which endpoint.")

COLUMNS = ("id", "endpoint_id", "event_types", "filter", "created_at")
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
    filter: Annotated[
        str | None, typer.Option("--filter", help="A CEL expression over the event.", metavar="CEL")
    ] = None,
    transform: Annotated[
        str | None,
        typer.Option("--transform", help="A JSONata expression over its data.", metavar="JSONATA"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Subscribe an endpoint to event types (narrowed by a filter, reshaped by a transform)."""
    body: dict[str, Any] = {"endpoint_id": endpoint_id, "event_types": event_type}
    body |= {k: v for k, v in (("filter", filter), ("transform", transform)) if v is not None}
    emit(api(config, "POST", "/api/v1/subscriptions", json=body))


@app.command("update")
def update(
    subscription_id: SubscriptionId,
    filter: Annotated[
        str | None, typer.Option("--filter", help="A new CEL filter; '' removes it.", metavar="CEL")
    ] = None,
    transform: Annotated[
        str | None,
        typer.Option(
            "--transform", help="A new JSONata transform; '' removes it.", metavar="JSONATA"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a subscription's filter or transformation."""
    body = {
        k: (v or None) for k, v in (("filter", filter), ("transform", transform)) if v is not None
    }
    emit(api(config, "PATCH", f"/api/v1/subscriptions/{q(subscription_id)}", json=body))


@app.command("preview")
def preview(
    subscription_id: SubscriptionId,
    event: Annotated[
        str | None,
        typer.Option("--event", help='An event as JSON: {"type": …, "data": …}.', metavar="JSON"),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="A stored event (evt_…).", metavar="EVENT_ID")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run an event through the subscription's filter and transformation: match, output, cost."""
    body: dict[str, Any] = {"event_id": event_id} if event_id else {}
    if event is not None:
        body["event"] = json.loads(event)
    path = f"/api/v1/subscriptions/{q(subscription_id)}/preview"
    emit(api(config, "POST", path, json=body))


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
