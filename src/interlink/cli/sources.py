"""``interlink sources``: inbound URLs partners send webhooks to."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from interlink.cli._api import (
    ConfigOpt,
    OutputOpt,
    api,
    emit,
    fail,
    q,
    settings,
)

app = typer.Typer(no_args_is_help=True, help="Inbound URLs partners send webhooks to.")

COLUMNS = ("id", "name", "verifier", "kit", "ingest_url", "created_at")
SourceId = Annotated[str, typer.Argument(help="The source's id (src_…).", metavar="SOURCE_ID")]
SourceRef = Annotated[
    str,
    typer.Argument(
        help="The source's id (src_…), or its name (looked up with INTERLINK_API_KEY).",
        metavar="SOURCE",
    ),
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for people to read.")],
    verifier: Annotated[
        str | None,
        typer.Option(
            help="standard_webhooks | stripe | github | shopify | hmac | none"
            " (default: the kit's, or standard_webhooks).",
            metavar="SCHEME",
        ),
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option(help="Secret(s); generated if none.", metavar="SECRET")
    ] = None,
    kit: Annotated[
        str | None,
        typer.Option(help="Partner kit that normalizes its events, e.g. pms_alpha.", metavar="KIT"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a source; prints its ingest URL and secret (shown this once)."""
    body: dict[str, Any] = {"name": name, "secrets": secret or []}
    if verifier:
        body["verifier"] = verifier
    if kit:
        body["kit"] = kit
    emit(api(config, "POST", "/api/v1/sources", json=body))


@app.command("list")
def list_(output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """List sources."""
    emit(api(config, "GET", "/api/v1/sources")["data"], output, COLUMNS)


@app.command("show")
def show(source_id: SourceId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one source (its secrets' expiry times, never the secrets)."""
    emit(api(config, "GET", f"/api/v1/sources/{q(source_id)}"), output)


@app.command("delete")
def delete(source_id: SourceId, config: ConfigOpt = None) -> None:
    """Delete a source (its events are kept)."""
    api(config, "DELETE", f"/api/v1/sources/{q(source_id)}")
    typer.echo(f"deleted {source_id}")


@app.command("rotate-secret")
def rotate_secret(
    source_id: SourceId,
    secret: Annotated[
        str | None,
        typer.Option(
            help="The new secret (the partner's); generated if omitted.", metavar="SECRET"
        ),
    ] = None,
    expire_current_in: Annotated[
        int | None,
        typer.Option(
            help="Seconds the current secrets keep verifying; kept if omitted.", metavar="SECONDS"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a secret to a source (printed this once), optionally expiring the current ones."""
    body: dict[str, object] = {}
    if secret is not None:
        body["secret"] = secret
    if expire_current_in is not None:
        body["expire_current_in_seconds"] = expire_current_in
    emit(api(config, "POST", f"/api/v1/sources/{q(source_id)}/secrets", json=body))


@app.command("set-kit")
def set_kit(
    source_id: SourceId,
    kit: Annotated[str, typer.Argument(help="A partner kit's name, or 'none'.")],
    config: ConfigOpt = None,
) -> None:
    """Name the partner kit that normalizes a source's events from now on."""
    body = {"kit": None if kit == "none" else kit}
    emit(api(config, "PATCH", f"/api/v1/sources/{q(source_id)}", json=body))


@app.command("set-reconciler")
def set_reconciler(
    source_id: SourceId,
    connection: Annotated[
        str, typer.Option(help="The OAuth connection to the partner's API.", metavar="CONN_ID")
    ],
    api_url: Annotated[str, typer.Option(help="The partner API's base URL.", metavar="URL")],
    interval: Annotated[
        float, typer.Option(help="Seconds between scheduled runs.", metavar="SECONDS")
    ] = 3600.0,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Keep the settings, run only on demand.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Reconcile a source (its kit must declare a reconciler) against its partner's API."""
    body = {
        "connection_id": connection,
        "api_url": api_url,
        "interval_seconds": interval,
        "enabled": not disabled,
    }
    emit(api(config, "PUT", f"/api/v1/sources/{q(source_id)}/reconciler", json=body))


@app.command("reconcile")
def reconcile(source_id: SourceId, config: ConfigOpt = None) -> None:
    """Reconcile a source now; prints the run: pulled, missing, corrected, unchanged…"""
    path = f"/api/v1/sources/{q(source_id)}/reconciliations"
    emit(api(config, "POST", path, timeout=600))  # a run pulls the partner's whole listing


@app.command("reconciliations")
def reconciliations(
    source_id: SourceId, output: OutputOpt = None, config: ConfigOpt = None
) -> None:
    """A source's reconciliation runs, newest first."""
    path = f"/api/v1/sources/{q(source_id)}/reconciliations"
    emit(api(config, "GET", path)["data"], output)


@app.command("send")
def send(
    source_id: SourceRef,
    event_type: Annotated[
        str, typer.Option("--type", help="The event type, e.g. booking.created.", metavar="TYPE")
    ],
    data: Annotated[
        str, typer.Option(help="The event's data, a JSON object.", metavar="JSON")
    ] = "{}",
    secret: Annotated[
        str | None,
        typer.Option(
            help="The source's whsec_… secret (shown when it was created); "
            "default: INTERLINK_SOURCE_SECRET.",
            metavar="SECRET",
            show_default=False,
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="Read the secret from this file.", metavar="FILE", show_default=False),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="The webhook-id (default: a new one).", metavar="ID"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Send a test webhook to a source, signed as a partner would (Standard Webhooks).

    It goes through the same ingest URL, verifier and dedupe as a partner's webhook.
    """
    import httpx

    from interlink.delivery.signing import signature_headers

    key = secret or os.environ.get("INTERLINK_SOURCE_SECRET")
    if secret_file is not None:
        try:
            key = secret_file.read_text().strip()
        except OSError as exc:
            raise fail(f"--secret-file: {exc}", 2) from None
    if not key:
        raise fail(
            "give the source's secret: --secret whsec_…, --secret-file or INTERLINK_SOURCE_SECRET",
            2,
        )
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise fail(f"--data is not JSON: {exc}", 2) from None
    body = json.dumps({"type": event_type, "data": payload}).encode()
    msg_id = event_id or f"msg_{secrets.token_hex(12)}"
    try:
        headers = signature_headers(key, msg_id, int(time.time()), body)
    except ValueError as exc:
        raise fail(f"--secret: {exc}", 2) from None
    base = os.environ.get("INTERLINK_API_URL", settings(config).public_url)
    if not source_id.startswith("src_"):
        source_id = _by_name(config, source_id)
    url = f"{base}/in/{q(source_id)}"
    try:
        response = httpx.post(
            url, content=body, headers={**headers, "content-type": "application/json"}, timeout=15
        )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach Interlink at {base}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise fail(f"{response.status_code}: {detail}")
    answer = response.json()
    typer.echo(json.dumps(answer))
    if not answer.get("duplicate"):
        typer.echo(f"follow it: interlink events timeline {answer['id']}", err=True)


def _by_name(config: str | None, name: str) -> str:
    """The id of the tenant's source called ``name`` (INTERLINK_API_KEY's tenant)."""
    found = [
        s["id"]
        for s in api(config, "GET", "/api/v1/sources", params={"limit": 500})["data"]
        if s["name"] == name
    ]
    if len(found) != 1:
        why = "no source" if not found else f"{len(found)} sources"
        raise fail(f"{why} called {name!r}: give the source's id (src_…)", 2)
    return str(found[0])
