"""``interlink``: run the platform (``up``) and manage it over its API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from interlink import config as config_module
from interlink.app import (
    ALL_ROLES,
    AlreadyRunning,
    CannotListen,
    Role,
    RolesNeedPostgres,
    serve,
)
from interlink.config import ConfigError, Settings
from interlink.observability.logging import configure as configure_logging
from interlink.storage.rls import UnsafeDatabase

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
sources_app = typer.Typer(no_args_is_help=True, help="Inbound URLs partners send webhooks to.")
endpoints_app = typer.Typer(no_args_is_help=True, help="Destinations that receive webhooks.")
subs_app = typer.Typer(no_args_is_help=True, help="Which event types go to which endpoint.")
events_app = typer.Typer(no_args_is_help=True, help="Events received.")
tenants_app = typer.Typer(no_args_is_help=True, help="Tenants (admin key).")
deliveries_app = typer.Typer(no_args_is_help=True, help="Deliveries: what went out, dead ones.")
jobs_app = typer.Typer(no_args_is_help=True, help="Bulk redrive and replay, tracked and paced.")
connections_app = typer.Typer(no_args_is_help=True, help="OAuth connections to partner APIs.")
quarantine_app = typer.Typer(
    no_args_is_help=True, help="Partner events that could not be normalized, or were held back."
)
app.add_typer(sources_app, name="sources")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(subs_app, name="subscriptions")
app.add_typer(events_app, name="events")
app.add_typer(tenants_app, name="tenants")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(jobs_app, name="jobs")
app.add_typer(connections_app, name="connections")
app.add_typer(quarantine_app, name="quarantine")
maintenance_app = typer.Typer(
    no_args_is_help=True, help="Partitions made ahead, retention (the scheduler runs it hourly)."
)
app.add_typer(maintenance_app, name="maintenance")

ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file")]
HostOpt = Annotated[str | None, typer.Option(help="Address to listen on")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on")]
DatabaseOpt = Annotated[str | None, typer.Option("--db", help="Database URL")]


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return config_module.load(config, **overrides)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(coro)


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Also run simulated partners and receivers")] = False,
    host: HostOpt = None,
    port: PortOpt = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run every role in one process (ingest, router, dispatcher, API)."""
    settings = _settings(config, host=host, port=port, database_url=database_url)
    try:
        if demo:
            from interlink.demo.runner import run_demo

            _run(run_demo(settings))
        else:
            configure_logging(settings.log_format, settings.log_level)
            typer.echo(f"Interlink on {settings.public_url} (API docs: {settings.public_url}/docs)")
            _run(serve(settings))
    except (AlreadyRunning, CannotListen) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    except UnsafeDatabase as exc:
        typer.secho(f"Interlink refuses to run: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@app.command()
def run(
    role: Annotated[
        list[str],
        typer.Option(
            help="ingress, router, dispatcher, scheduler, api or all; repeat for several",
        ),
    ],
    host: HostOpt = None,
    port: PortOpt = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run some roles (on PostgreSQL): any number of processes of each share the work."""
    settings = _settings(config, host=host, port=port, database_url=database_url)
    configure_logging(settings.log_format, settings.log_level)
    try:
        roles = ALL_ROLES if "all" in role else frozenset(Role(r) for r in role)
    except ValueError:
        names = ", ".join([*sorted(Role), "all"])
        typer.secho(f"--role: one of {names}, not {', '.join(role)}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Interlink ({', '.join(sorted(roles))}) on {settings.public_url}")
    try:
        _run(serve(settings, roles=roles))
    except (AlreadyRunning, CannotListen, RolesNeedPostgres) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


# API client commands --------------------------------------------------------------------------


def _client(config: str | None, admin: bool = False) -> httpx.Client:
    settings = _settings(config)
    base = os.environ.get("INTERLINK_API_URL", settings.public_url)
    key = os.environ.get("INTERLINK_API_KEY")
    if admin:
        from interlink.app import admin_key

        key = os.environ.get("INTERLINK_ADMIN_KEY") or admin_key(settings)
    if not key:
        typer.secho("set INTERLINK_API_KEY to a tenant's API key", fg="red", err=True)
        raise typer.Exit(2)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=15)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        typer.secho(f"cannot reach Interlink at {client.base_url}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title")
        except ValueError:
            detail = response.text[:200]
        typer.secho(f"{response.status_code}: {detail}", fg="red", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@tenants_app.command("create")
def tenants_create(name: str, config: ConfigOpt = None) -> None:
    """Create a tenant; prints its first API key once."""
    with _client(config, admin=True) as c:
        _print(_call(c, "POST", "/api/v1/tenants", json={"name": name}))


@sources_app.command("create")
def sources_create(
    name: str,
    verifier: Annotated[
        str | None,
        typer.Option(
            help="standard_webhooks | stripe | github | shopify | hmac | none"
            " (default: the kit's, or standard_webhooks)"
        ),
    ] = None,
    secret: Annotated[list[str] | None, typer.Option(help="Secret(s); generated if none")] = None,
    kit: Annotated[
        str | None, typer.Option(help="Partner kit that normalizes its events, e.g. pms_alpha")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a source; prints its ingest URL and secret (shown this once)."""
    with _client(config) as c:
        body: dict[str, Any] = {"name": name, "secrets": secret or []}
        if verifier:
            body["verifier"] = verifier
        if kit:
            body["kit"] = kit
        _print(_call(c, "POST", "/api/v1/sources", json=body))


@sources_app.command("rotate-secret")
def sources_rotate_secret(
    source_id: str,
    secret: Annotated[
        str | None, typer.Option(help="The new secret (the partner's); generated if omitted")
    ] = None,
    expire_current_in: Annotated[
        int | None,
        typer.Option(help="Seconds the current secrets keep verifying; kept if omitted"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a secret to a source (printed this once), optionally expiring the current ones."""
    body: dict[str, object] = {}
    if secret is not None:
        body["secret"] = secret
    if expire_current_in is not None:
        body["expire_current_in_seconds"] = expire_current_in
    with _client(config) as c:
        _print(_call(c, "POST", f"/api/v1/sources/{source_id}/secrets", json=body))


@sources_app.command("set-kit")
def sources_set_kit(
    source_id: str,
    kit: Annotated[str, typer.Argument(help="A partner kit's name, or 'none'")],
    config: ConfigOpt = None,
) -> None:
    """Name the partner kit that normalizes a source's events from now on."""
    with _client(config) as c:
        body = {"kit": None if kit == "none" else kit}
        _print(_call(c, "PATCH", f"/api/v1/sources/{quote(source_id, safe='')}", json=body))


@sources_app.command("set-reconciler")
def sources_set_reconciler(
    source_id: str,
    connection: Annotated[str, typer.Option(help="the OAuth connection to the partner's API")],
    api_url: Annotated[str, typer.Option(help="the partner API's base URL")],
    interval: Annotated[float, typer.Option(help="seconds between scheduled runs")] = 3600.0,
    disabled: Annotated[bool, typer.Option(help="keep the settings, run only on demand")] = False,
    config: ConfigOpt = None,
) -> None:
    """Reconcile a source (its kit must declare a reconciler) against its partner's API."""
    body = {
        "connection_id": connection,
        "api_url": api_url,
        "interval_seconds": interval,
        "enabled": not disabled,
    }
    with _client(config) as c:
        path = f"/api/v1/sources/{quote(source_id, safe='')}/reconciler"
        _print(_call(c, "PUT", path, json=body))


@sources_app.command("reconcile")
def sources_reconcile(source_id: str, config: ConfigOpt = None) -> None:
    """Reconcile a source now; prints the run: pulled, missing, corrected, unchanged…"""
    with _client(config) as c:
        path = f"/api/v1/sources/{quote(source_id, safe='')}/reconciliations"
        _print(_call(c, "POST", path, timeout=600))  # a run pulls the partner's whole listing


@sources_app.command("reconciliations")
def sources_reconciliations(source_id: str, config: ConfigOpt = None) -> None:
    """A source's reconciliation runs, newest first."""
    with _client(config) as c:
        path = f"/api/v1/sources/{quote(source_id, safe='')}/reconciliations"
        _print(_call(c, "GET", path)["data"])


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str | None, typer.Option(help="open | resolved")] = "open",
    stage: Annotated[str | None, typer.Option(help="e.g. mapping, schema, held")] = None,
    config: ConfigOpt = None,
) -> None:
    """List quarantine entries, newest first, with their reasons."""
    params = {k: v for k, v in {"status": status, "stage": stage}.items() if v}
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/quarantine", params=params)["data"])


@quarantine_app.command("reprocess")
def quarantine_reprocess(entry_id: str, config: ConfigOpt = None) -> None:
    """Normalize a quarantined event again with its source's kit as it is now."""
    with _client(config) as c:
        path = f"/api/v1/quarantine/{quote(entry_id, safe='')}/reprocess"
        _print(_call(c, "POST", path))


@sources_app.command("list")
def sources_list(config: ConfigOpt = None) -> None:
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/sources")["data"])


@endpoints_app.command("create")
def endpoints_create(
    url: str,
    description: str = "",
    retry_schedule: Annotated[
        str | None, typer.Option(help="Delays in seconds, e.g. 0,5,300")
    ] = None,
    ordered: Annotated[
        bool, typer.Option(help="Deliver events of one key one at a time, in log order")
    ] = False,
    skip_dead_heads: Annotated[
        bool, typer.Option(help="Ordered: move past a key's dead event instead of waiting")
    ] = False,
    concurrency: Annotated[int | None, typer.Option(help="Attempts in flight at once")] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="At most this many sends, e.g. 10/second or 600/minute")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create an endpoint; prints its signing secret (shown this once)."""
    body: dict[str, Any] = {"url": url, "description": description}
    if retry_schedule:
        body["retry_schedule"] = [float(x) for x in retry_schedule.split(",")]
    if ordered:
        body["ordering"] = "ordered"
    if skip_dead_heads:
        body["on_head_dead"] = "skip"
    if concurrency is not None:
        body["concurrency"] = concurrency
    if rate_limit:
        body["rate_limit"] = _rate_limit(rate_limit)
    with _client(config) as c:
        created = _call(c, "POST", "/api/v1/endpoints", json=body)
    _print(created)
    _print_warnings(created.get("endpoint", {}).get("warnings", []))


def _print_warnings(warnings: list[str]) -> None:
    """The API's warnings, on stderr, so the JSON on stdout stays parseable."""
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)


def _rate_limit(text: str) -> dict[str, Any]:
    rate, _, per = text.partition("/")
    try:
        return {"rate": float(rate), "per": per.strip() or "second"}
    except ValueError:
        typer.secho(f"--rate-limit: {text!r} is not like 10/second", fg="red", err=True)
        raise typer.Exit(2) from None


@endpoints_app.command("health")
def endpoints_health(endpoint_id: str, config: ConfigOpt = None) -> None:
    """An endpoint's circuit breaker, failing streak and latency."""
    with _client(config) as c:
        _print(_call(c, "GET", f"/api/v1/endpoints/{endpoint_id}/health"))


@endpoints_app.command("list")
def endpoints_list(config: ConfigOpt = None) -> None:
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/endpoints")["data"])


@subs_app.command("create")
def subscriptions_create(
    endpoint_id: str,
    event_type: Annotated[list[str], typer.Option("--type", help="Pattern, e.g. booking.*")],
    config: ConfigOpt = None,
) -> None:
    with _client(config) as c:
        body = {"endpoint_id": endpoint_id, "event_types": event_type}
        _print(_call(c, "POST", "/api/v1/subscriptions", json=body))


@subs_app.command("list")
def subscriptions_list(config: ConfigOpt = None) -> None:
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/subscriptions")["data"])


@events_app.command("tail")
def events_tail(
    interval: Annotated[float, typer.Option(help="Seconds between polls")] = 1.0,
    type: Annotated[str | None, typer.Option(help="Only this event type")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print events as they arrive (Ctrl-C stops)."""
    seen: set[str] = set()
    since = time.time()
    with _client(config) as c:
        try:
            while True:
                params: dict[str, Any] = {"after": since - 1, "limit": 500}
                if type:
                    params["type"] = type
                page = _call(c, "GET", "/api/v1/events", params=params)["data"]
                for event in reversed(page):
                    if event["id"] in seen:
                        continue
                    seen.add(event["id"])
                    typer.echo(
                        f"{event['received_at']}  {event['id']}  {event['type']:<24} "
                        f"key={event['key'] or '-'}"
                    )
                if page:
                    since = max(since, time.time() - 60)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


@connections_app.command("create")
def connections_create(
    partner: str,
    token_url: Annotated[str, typer.Option(help="The partner's OAuth2 token endpoint")],
    client_id: Annotated[str, typer.Option(help="OAuth2 client id")],
    client_secret: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="OAuth2 client secret (prompted)")
    ],
    flow: Annotated[
        str, typer.Option(help="client_credentials | authorization_code")
    ] = "client_credentials",
    scope: Annotated[list[str] | None, typer.Option(help="Scope(s) to ask for")] = None,
    refresh_token: Annotated[
        str | None, typer.Option(help="authorization_code: the refresh token consent gave")
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="authorization_code: an authorization code to exchange")
    ] = None,
    redirect_uri: Annotated[str | None, typer.Option(help="The code's redirect URI")] = None,
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
    with _client(config) as c:
        _print(_call(c, "POST", "/api/v1/connections", json=body))


@connections_app.command("list")
def connections_list(config: ConfigOpt = None) -> None:
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/connections")["data"])


@connections_app.command("show")
def connections_show(connection_id: str, config: ConfigOpt = None) -> None:
    """Status (healthy, expiring, failed), expiry, refresh counts and the last error."""
    with _client(config) as c:
        _print(_call(c, "GET", f"/api/v1/connections/{quote(connection_id, safe='')}"))


@connections_app.command("refresh")
def connections_refresh(connection_id: str, config: ConfigOpt = None) -> None:
    """Refresh the token now; prints the connection afterwards."""
    with _client(config) as c:
        _print(_call(c, "POST", f"/api/v1/connections/{quote(connection_id, safe='')}/refresh"))


@connections_app.command("delete")
def connections_delete(connection_id: str, config: ConfigOpt = None) -> None:
    with _client(config) as c:
        _call(c, "DELETE", f"/api/v1/connections/{quote(connection_id, safe='')}")


@connections_app.command("new-key")
def connections_new_key() -> None:
    """Print a new secrets key (for INTERLINK_SECRETS_KEY)."""
    from interlink.storage.secrets_box import SecretBox

    typer.echo(SecretBox.new_key())


@connections_app.command("rotate-key")
def connections_rotate_key(config: ConfigOpt = None) -> None:
    """Re-encrypt every stored secret and token under the first key of INTERLINK_SECRETS_KEY.

    Put the new key first and keep the old ones after it; once this has run, the old keys can
    go. Runs against the database directly (no API), and may run while Interlink does.
    """
    from interlink.storage.connections import Connections
    from interlink.storage.database import Database
    from interlink.storage.secrets_box import SecretBox, SecretUnreadable, secrets_keys

    settings = _settings(config)
    try:
        box = SecretBox(secrets_keys(settings.secrets_key))
    except ValueError as exc:
        typer.secho(f"secrets_key: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None

    async def rotate() -> int:
        db = Database(settings.database_url)
        try:
            return await Connections(db, box).reencrypt()
        finally:
            await db.close()

    try:
        count = asyncio.run(rotate())
    except SecretUnreadable as exc:
        typer.secho(f"{exc}: keep the old key in the list", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-encrypted {count} connection(s) under the first key")


@maintenance_app.command("run")
def maintenance_run(
    retention_days: Annotated[
        float | None, typer.Option(help="Drop events older than this (default: the setting)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """One maintenance pass now: make the coming days' partitions and drop what is older than
    the retention. Runs against the database directly (no API), and may run while Interlink
    does (one pass at a time across processes)."""
    from interlink.storage.database import Database
    from interlink.storage.maintenance import Maintenance, owner_database

    settings = _settings(config, retention_days=retention_days)

    async def once() -> None:
        db = Database(settings.database_url)
        maintenance = Maintenance(
            db,
            owner_database(db, settings.migration_url),
            retention_days=settings.retention_days,
        )
        try:
            report = await maintenance.run_once()
        finally:
            await maintenance.close()
            await db.close()
        if report.skipped:
            typer.echo("another process is running a maintenance pass; nothing done")
            return
        typer.echo(f"partitions made: {', '.join(report.created) or 'none'}")
        typer.echo(f"partitions dropped: {', '.join(report.dropped) or 'none'}")
        for name, why in report.kept:
            typer.echo(f"kept {name}: {why}")
        rows = ", ".join(f"{table} {n}" for table, n in sorted(report.rows.items()))
        typer.echo(f"rows dropped: {rows or 'none'}")

    try:
        _run(once())
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def format_timeline(timeline: dict[str, Any]) -> list[str]:
    """One line per step, readable in a terminal: time, step, what happened."""
    lines = [f"event {timeline['event_id']}"]
    for step in timeline["steps"]:
        kind, at = step["step"], step["at"] or "-"
        if kind == "received":
            source = step["source_id"] + (
                f" ({step['source_name']})" if step["source_name"] else ""
            )
            how = step["verifier"] or "?"
            if step["signature_headers"]:
                how += f" via {step['signature_headers']}"
            what = f"{step['type']} from {source}, verified by {how}"
            if step.get("trace_id"):
                what += f"  trace {step['trace_id']}"
            if step.get("derived_from"):
                what += f", normalized from {step['derived_from']}"
        elif kind == "normalized":
            what = f"-> {step['event_id']} {step['type']} key={step['key'] or '-'}"
        elif kind == "quarantined":
            what = f"{step['entry_id']} {step['stage']}: {step['reason']}"
            if step["resolution"]:
                what += f" ({step['resolution']} at {step['resolved_at']})"
            kind = "quarantine"
        elif kind == "routed":
            where = f" {step['endpoint_url']}" if step["endpoint_url"] else ""
            what = f"{step['delivery_id']} -> {step['endpoint_id']}{where}"
        elif kind == "attempt":
            code = step["status_code"] if step["status_code"] is not None else "---"
            what = (
                f"#{step['number']} {step['endpoint_id']}  {code} {step['outcome']}"
                f"  {step['latency_ms']:.0f} ms"
            )
            if step["error"]:
                what += f"  {step['error']}"
        else:
            kind = "state"
            what = (
                f"{step['delivery_id']} {step['status']} after {step['attempt_count']} attempt(s)"
            )
            if step["next_attempt_at"]:
                what += f", next at {step['next_attempt_at']}"
        lines.append(f"{at}  {kind:<9} {what}")
    return lines


@events_app.command("timeline")
def events_timeline(
    event_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Every step of one event: received, routed, each attempt, each delivery's state."""
    with _client(config) as c:
        timeline = _call(c, "GET", f"/api/v1/events/{quote(event_id, safe='')}/timeline")
    if as_json:
        _print(timeline)
        return
    for line in format_timeline(timeline):
        typer.echo(line)


AfterOpt = Annotated[
    str | None, typer.Option("--after", help="From this time (ISO 8601 or epoch seconds)")
]
BeforeOpt = Annotated[
    str | None, typer.Option("--before", help="Until this time (ISO 8601 or epoch seconds)")
]
TypeOpt = Annotated[str | None, typer.Option("--type", help="Only events of this type")]
RateOpt = Annotated[
    float | None, typer.Option("--rate", help="Items per second at most (default: configured)")
]


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[str | None, typer.Option(help="pending | scheduled | dead | …")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Endpoint id")] = None,
    type: TypeOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first)")] = 50,
    config: ConfigOpt = None,
) -> None:
    """List deliveries, e.g. the dead ones of an endpoint: --status dead --endpoint ep_…"""
    params = _params(
        status=status, endpoint_id=endpoint, type=type, after=after, before=before, limit=limit
    )
    with _client(config) as c:
        _print(_call(c, "GET", "/api/v1/deliveries", params=params)["data"])


FINISHED_JOB = ("succeeded", "failed", "cancelled")


def format_job(job: dict[str, Any]) -> str:
    """One line of progress: id, kind, status, done/total, rate, eta."""
    total = job["total"]
    if total is None:
        progress = f"{job['done']}/?"
    else:
        percent = 100.0 * job["done"] / total if total else 100.0
        progress = f"{job['done']}/{total} ({percent:.0f}%)"
    line = f"{job['id']}  {job['kind']:<7} {job['status']:<9} {progress}  at {job['rate']:g}/s"
    if job["skipped"]:
        line += f", {job['skipped']} skipped"
    if job["eta_seconds"] is not None and job["status"] not in FINISHED_JOB:
        line += f", eta {job['eta_seconds']:.0f}s"
    if job["last_error"]:
        line += f"  error: {job['last_error']}"
    return line


def _job_path(job_id: str, action: str = "") -> str:
    return f"/api/v1/jobs/{quote(job_id, safe='')}{action}"


@jobs_app.command("redrive")
def jobs_redrive(
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Endpoint id")] = None,
    type: TypeOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    rate: RateOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send dead deliveries again (all of them, or those matching), as a paced job."""
    body = _params(endpoint_id=endpoint, type=type, after=after, before=before, rate=rate)
    with _client(config) as c:
        _print(_call(c, "POST", "/api/v1/jobs/redrive", json=body))


@jobs_app.command("replay")
def jobs_replay(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint to send the events to")],
    event: Annotated[list[str] | None, typer.Option("--event", help="Event id(s)")] = None,
    type: TypeOpt = None,
    source: Annotated[str | None, typer.Option("--source", help="Source id")] = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    rate: RateOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send events again to one endpoint (by id, or by type, source and time), as a paced job."""
    body = _params(
        endpoint_id=endpoint_id,
        event_ids=event or None,
        type=type,
        source_id=source,
        after=after,
        before=before,
        rate=rate,
    )
    with _client(config) as c:
        _print(_call(c, "POST", "/api/v1/jobs/replay", json=body))


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued | running | succeeded | …")] = None,
    config: ConfigOpt = None,
) -> None:
    with _client(config) as c:
        for job in _call(c, "GET", "/api/v1/jobs", params=_params(status=status))["data"]:
            typer.echo(format_job(job))


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    watch: Annotated[bool, typer.Option("--watch", help="Print progress until it is over")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks (--watch)")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """A job and its progress; --watch follows it to the end (Ctrl-C stops watching)."""
    job: dict[str, Any] = {}
    with _client(config) as c:
        try:
            while True:
                job = _call(c, "GET", _job_path(job_id))
                typer.echo(json.dumps(job, indent=2) if as_json else format_job(job))
                if not watch or job["status"] in FINISHED_JOB:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    if job.get("status") == "failed":
        raise typer.Exit(1)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, config: ConfigOpt = None) -> None:
    """Stop a job after the batch in hand."""
    with _client(config) as c:
        typer.echo(format_job(_call(c, "POST", _job_path(job_id, "/cancel"))))


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # pragma: no cover - `interlink events tail | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
