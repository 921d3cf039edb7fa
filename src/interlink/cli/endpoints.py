"""``interlink endpoints``: destinations that receive webhooks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlink.cli._api import ConfigOpt, OutputOpt, api, emit, fail, q

app = typer.Typer(
    no_args_is_help=True,
    help="Destinations of events: URLs that receive webhooks (push), or queues that consumers"
    " claim from (pull).",
)

COLUMNS = ("id", "kind", "url", "status", "ordering", "concurrency", "description")
EndpointId = Annotated[str, typer.Argument(help="The endpoint's id (ep_…).", metavar="ENDPOINT_ID")]
DescriptionOpt = Annotated[
    str | None, typer.Option(help="A note for people to read.", metavar="TEXT")
]
RetryOpt = Annotated[
    str | None,
    typer.Option(help="Delays in seconds between attempts, e.g. 0,5,300.", metavar="DELAYS"),
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option(help="Attempts in flight at once.", metavar="N")
]
RateLimitOpt = Annotated[
    str | None,
    typer.Option(help="At most this many sends, e.g. 10/second or 600/minute.", metavar="RATE"),
]


SigningOpt = Annotated[
    str | None,
    typer.Option(
        help="v1 (HMAC with a shared whsec_ secret, the default) or v1a (Ed25519).",
        metavar="SCHEME",
    ),
]


def _rate_limit(text: str) -> dict[str, Any]:
    rate, _, per = text.partition("/")
    try:
        return {"rate": float(rate), "per": per.strip() or "second"}
    except ValueError:
        raise fail(f"--rate-limit: {text!r} is not like 10/second", 2) from None


def _retry(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise fail(f"--retry-schedule: {text!r} is not seconds like 0,5,300", 2) from None


@app.command("create")
def create(
    url: Annotated[
        str | None,
        typer.Argument(help="Where webhooks are POSTed (https://…); none with --pull or --kafka."),
    ] = None,
    pull: Annotated[
        bool,
        typer.Option(
            "--pull",
            help="A pull endpoint: no URL; consumers claim its deliveries"
            " (POST /api/v1/endpoints/{id}/claims) and ack or nack each.",
        ),
    ] = False,
    kafka: Annotated[
        str | None,
        typer.Option(
            "--kafka",
            metavar="CLUSTER/TOPIC",
            help="A Kafka endpoint: CLUSTER/TOPIC, a cluster the operator granted you"
            " (docs/kafka.md); each delivery becomes a record there.",
        ),
    ] = None,
    kafka_key: Annotated[
        str | None,
        typer.Option(
            "--kafka-key",
            metavar="TEMPLATE",
            help="Kafka: the record key's template (default: {key}).",
        ),
    ] = None,
    description: DescriptionOpt = None,
    retry_schedule: RetryOpt = None,
    ordered: Annotated[
        bool, typer.Option("--ordered", help="Deliver events of one key one at a time, in order.")
    ] = False,
    skip_dead_heads: Annotated[
        bool,
        typer.Option(
            "--skip-dead-heads", help="Ordered: pass a key's dead event instead of waiting."
        ),
    ] = False,
    concurrency: ConcurrencyOpt = None,
    rate_limit: RateLimitOpt = None,
    signing: SigningOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an endpoint; prints its signing secret (shown this once), or for v1a its public
    key (the private key is never shown)."""
    if [url is not None, pull, kafka is not None].count(True) != 1:
        raise fail("give one of a URL (a push endpoint), --pull or --kafka CLUSTER/TOPIC", 2)
    body: dict[str, Any] = {"description": description or ""}
    if kafka is not None:
        cluster, _, topic = kafka.partition("/")
        target = {"cluster": cluster, "topic": topic}
        body.update(
            kind="kafka", kafka=target if kafka_key is None else {**target, "key": kafka_key}
        )
    else:
        body.update({"kind": "pull"} if pull else {"url": url})
    if signing:
        body["signing"] = signing
    if retry_schedule:
        body["retry_schedule"] = _retry(retry_schedule)
    if ordered:
        body["ordering"] = "ordered"
    if skip_dead_heads:
        body["on_head_dead"] = "skip"
    if concurrency is not None:
        body["concurrency"] = concurrency
    if rate_limit:
        body["rate_limit"] = _rate_limit(rate_limit)
    created = api(config, "POST", "/api/v1/endpoints", json=body)
    emit(created)
    _print_warnings(created.get("endpoint", {}).get("warnings", []))


def _print_warnings(warnings: list[str]) -> None:
    """The API's warnings, on stderr, so the JSON on stdout stays parseable."""
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)


@app.command("rotate-secret")
def rotate_secret(
    endpoint_id: EndpointId,
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Seconds the current secret keeps signing beside the new one "
            "(default 86400, at most 604800; 0 retires it now).",
            metavar="SECONDS",
        ),
    ] = None,
    signing: SigningOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rotate the signing secret; prints the new one once (v1a: its public key). During the
    overlap every delivery carries both signatures, so receivers can switch at their pace."""
    body: dict[str, Any] = {}
    if overlap is not None:
        body["overlap_seconds"] = overlap
    if signing:
        body["signing"] = signing
    emit(api(config, "POST", f"/api/v1/endpoints/{q(endpoint_id)}/secret/rotate", json=body))


@app.command("list")
def list_(output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """List endpoints."""
    emit(api(config, "GET", "/api/v1/endpoints")["data"], output, COLUMNS)


@app.command("show")
def show(endpoint_id: EndpointId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one endpoint's settings and status."""
    emit(api(config, "GET", f"/api/v1/endpoints/{q(endpoint_id)}"), output)


@app.command("update")
def update(
    endpoint_id: EndpointId,
    url: Annotated[str | None, typer.Option(help="A new URL.", metavar="URL")] = None,
    description: DescriptionOpt = None,
    retry_schedule: RetryOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds an attempt may take.", metavar="SECONDS")
    ] = None,
    ordering: Annotated[
        str | None, typer.Option(help="ordered | unordered.", metavar="ORDERING")
    ] = None,
    concurrency: ConcurrencyOpt = None,
    rate_limit: RateLimitOpt = None,
    no_rate_limit: Annotated[
        bool, typer.Option("--no-rate-limit", help="Remove the rate limit.")
    ] = False,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Change an endpoint's settings; what is not given stays as it is."""
    body: dict[str, Any] = {}
    for name, value in (
        ("url", url),
        ("description", description),
        ("timeout_seconds", timeout),
        ("ordering", ordering),
        ("concurrency", concurrency),
    ):
        if value is not None:
            body[name] = value
    if retry_schedule:
        body["retry_schedule"] = _retry(retry_schedule)
    if rate_limit and no_rate_limit:
        raise fail("--rate-limit or --no-rate-limit, not both", 2)
    if rate_limit:
        body["rate_limit"] = _rate_limit(rate_limit)
    if no_rate_limit:
        body["rate_limit"] = None
    if not body:
        raise fail("nothing to change: give at least one option (see --help)", 2)
    changed = _patch(config, endpoint_id, body)
    emit(changed, output)
    _print_warnings(changed.get("warnings", []))


def _patch(config: str | None, endpoint_id: str, body: dict[str, Any]) -> Any:
    return api(config, "PATCH", f"/api/v1/endpoints/{q(endpoint_id)}", json=body)


@app.command("pause")
def pause(endpoint_id: EndpointId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Stop sending to an endpoint; its deliveries are kept and flow again on resume."""
    emit(_patch(config, endpoint_id, {"status": "paused"}), output)


@app.command("resume")
def resume(endpoint_id: EndpointId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Send to a paused or disabled endpoint again (its circuit breaker is reset)."""
    emit(_patch(config, endpoint_id, {"status": "active"}), output)


@app.command("delete")
def delete(endpoint_id: EndpointId, config: ConfigOpt = None) -> None:
    """Delete an endpoint (its deliveries are kept)."""
    api(config, "DELETE", f"/api/v1/endpoints/{q(endpoint_id)}")
    typer.echo(f"deleted {endpoint_id}")


@app.command("health")
def health(endpoint_id: EndpointId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """An endpoint's circuit breaker, failing streak, latency and what holds its lane."""
    emit(api(config, "GET", f"/api/v1/endpoints/{q(endpoint_id)}/health"), output)
