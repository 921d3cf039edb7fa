"""``interlink deliveries``: what went out, the dead ones, retrying one."""

from __future__ import annotations

from typing import Annotated

import typer

from interlink.cli._api import (
    AfterOpt,
    BeforeOpt,
    ConfigOpt,
    LimitOpt,
    OutputOpt,
    TypeOpt,
    api,
    emit,
    params,
    q,
)

app = typer.Typer(no_args_is_help=True, help="Deliveries: what went out, dead ones, retries.")

COLUMNS = (
    "id",
    "status",
    "attempt_count",
    "endpoint_id",
    "event_id",
    "last_status_code",
    "next_attempt_at",
)
ATTEMPT_COLUMNS = ("number", "started_at", "status_code", "outcome", "latency_ms", "error")
DeliveryId = Annotated[
    str, typer.Argument(help="The delivery's id (dlv_…).", metavar="DELIVERY_ID")
]


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(
            help="pending | scheduled | in_flight | succeeded | dead | …", metavar="STATUS"
        ),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Only this endpoint's.", metavar="ENDPOINT_ID")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Only this event's.", metavar="EVENT_ID")
    ] = None,
    type: TypeOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    limit: LimitOpt = 50,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List deliveries, e.g. the dead ones of an endpoint: --status dead --endpoint ep_…"""
    query = params(
        status=status,
        endpoint_id=endpoint,
        event_id=event,
        type=type,
        after=after,
        before=before,
        limit=limit,
    )
    emit(api(config, "GET", "/api/v1/deliveries", params=query)["data"], output, COLUMNS)


@app.command("show")
def show(delivery_id: DeliveryId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one delivery: its status, attempts so far, next attempt."""
    emit(api(config, "GET", f"/api/v1/deliveries/{q(delivery_id)}"), output)


@app.command("attempts")
def attempts(delivery_id: DeliveryId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Every attempt of a delivery, first to last."""
    found = api(config, "GET", f"/api/v1/deliveries/{q(delivery_id)}/attempts")["data"]
    emit(found, output, ATTEMPT_COLUMNS)


@app.command("retry")
def retry(delivery_id: DeliveryId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Send a delivery again now (a dead one too)."""
    emit(api(config, "POST", f"/api/v1/deliveries/{q(delivery_id)}/retry"), output)
