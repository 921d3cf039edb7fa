"""``interlink events``: events received, their timelines, replay; publishing your own."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from interlink.cli import _api
from interlink.cli._api import (
    AfterOpt,
    BeforeOpt,
    ConfigOpt,
    LimitOpt,
    Output,
    OutputOpt,
    TypeOpt,
    api,
    emit,
    fail,
    output_format,
    params,
    q,
)
from interlink.cli._sse import SseParser

app = typer.Typer(
    no_args_is_help=True,
    help="Events: list, show, follow, timeline, replay; publish your own.",
)

COLUMNS = ("id", "received_at", "type", "key", "source_id", "origin")
EventId = Annotated[str, typer.Argument(help="The event's id (evt_…).", metavar="EVENT_ID")]


@app.command("list")
def list_(
    type: TypeOpt = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source's.", metavar="SOURCE_ID")
    ] = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    limit: LimitOpt = 50,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List events, newest first."""
    found = params(type=type, source_id=source, after=after, before=before, limit=limit)
    emit(api(config, "GET", "/api/v1/events", params=found)["data"], output, COLUMNS)


@app.command("show")
def show(event_id: EventId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Show one event with its data and kept headers."""
    emit(api(config, "GET", f"/api/v1/events/{q(event_id)}"), output)


@app.command("publish")
def publish(
    event_type: Annotated[
        str, typer.Argument(help="The event type, e.g. booking.confirmed.", metavar="TYPE")
    ],
    data: Annotated[
        str, typer.Option(help="The event's data, a JSON object.", metavar="JSON")
    ] = "{}",
    key: Annotated[
        str | None,
        typer.Option(
            help="Ordering key: an ordered endpoint gets a key's events in order.",
            metavar="KEY",
            show_default=False,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Publishing this key again answers the first event (a duplicate).",
            metavar="KEY",
            show_default=False,
        ),
    ] = None,
    occurred_at: Annotated[
        str | None,
        typer.Option(
            help="When it happened (ISO 8601 or epoch seconds).", metavar="TIME", show_default=False
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish an event of your own (POST /api/v1/events): routed to subscribed endpoints.

    Prints {"id", "duplicate"} once the event is stored durably.
    """
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise fail(f"--data is not JSON: {exc}", 2) from None
    if not isinstance(payload, dict):
        raise fail("--data must be a JSON object", 2)
    body = {"type": event_type, "data": payload} | params(
        key=key, idempotency_key=idempotency_key, occurred_at=occurred_at
    )
    answer = api(config, "POST", "/api/v1/events", json=body)
    typer.echo(json.dumps(answer))
    if not answer.get("duplicate"):
        typer.echo(f"follow it: interlink events timeline {answer['id']}", err=True)


@app.command("replay")
def replay(
    event_id: EventId,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Only to this endpoint (default: every subscribed one).",
            metavar="ENDPOINT_ID",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Send an event again to its subscribed endpoints (or one endpoint)."""
    body = {"endpoint_id": endpoint} if endpoint else None
    emit(api(config, "POST", f"/api/v1/events/{q(event_id)}/replay", json=body))


@app.command("tail")
def tail(
    type: Annotated[
        str | None,
        typer.Option(
            "--type",
            "--types",
            help="Type patterns, comma-separated (booking.*,payment.*).",
            metavar="PATTERNS",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Only these sources' (comma-separated).", metavar="IDS"),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Only these keys (comma-separated).", metavar="KEYS"),
    ] = None,
    from_: Annotated[
        int | None,
        typer.Option("--from", help="Replay after this log position first.", metavar="POSITION"),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after this many events.", metavar="N")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print events as they are appended to the log, live (Ctrl-C stops).

    Reads the SSE stream (GET /api/v1/stream); after a drop it reconnects and resumes from the
    last position it printed, so nothing is missed or printed twice.
    """
    query = params(types=type, source=source, key=key)
    last = from_
    printed = 0
    with _api.client(config) as c:
        try:
            while count is None or printed < count:
                last, n, retry = _follow(
                    c, query, last, as_json, None if count is None else count - printed
                )
                printed += n
                if not retry:
                    break
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def _follow(
    c: Any, query: dict[str, Any], last: int | None, as_json: bool, most: int | None
) -> tuple[int | None, int, bool]:
    """One connection: prints events until it ends; answers the last position, how many it
    printed and whether to reconnect."""
    import httpx

    headers = {} if last is None else {"Last-Event-ID": str(last)}
    parser = SseParser()
    printed = 0
    try:
        with c.stream(
            "GET",
            "/api/v1/stream",
            params=query,
            headers=headers,
            timeout=httpx.Timeout(15, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                detail = response.json().get("detail", response.reason_phrase)
                raise _api.fail(f"{response.status_code}: {detail}")
            for line in response.iter_lines():
                message = parser.feed(line)
                if message is None:
                    continue
                if message.event != "message":
                    notice = json.loads(message.data)
                    typer.secho(
                        f"{message.event}: {notice.get('detail', '')}", err=True, fg="yellow"
                    )
                    continue
                event = json.loads(message.data)
                last = int(event["seq"])
                typer.echo(message.data if as_json else _line(event))
                printed += 1
                if most is not None and printed >= most:
                    return last, printed, False
    except httpx.HTTPError as exc:
        typer.secho(f"stream interrupted ({exc.__class__.__name__}); reconnecting", err=True)
    return last, printed, True


def _line(event: dict[str, Any]) -> str:
    return (
        f"{event['seq']:>8}  {event['received_at']}  {event['id']}  {event['type']:<24} "
        f"key={event['key'] or '-'}"
    )


def _received(step: dict[str, Any]) -> str:
    if step.get("origin") == "api":
        return f"{step['type']} published through the API, key {step['idempotency_key']}"
    source = step["source_id"] + (f" ({step['source_name']})" if step["source_name"] else "")
    how = step["verifier"] or "?"
    if step["signature_headers"]:
        how += f" via {step['signature_headers']}"
    what = f"{step['type']} from {source}, verified by {how}"
    if step.get("trace_id"):
        what += f"  trace {step['trace_id']}"
    if step.get("derived_from"):
        what += f", normalized from {step['derived_from']}"
    return what


def format_timeline(timeline: dict[str, Any]) -> list[str]:
    """One line per step, readable in a terminal: time, step, what happened."""
    lines = [f"event {timeline['event_id']}"]
    for step in timeline["steps"]:
        kind, at = step["step"], step["at"] or "-"
        if kind == "received":
            what = _received(step)
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


@app.command("timeline")
def timeline(
    event_id: EventId,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json.")] = False,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Every step of one event: received, routed, each attempt, each delivery's state.

    One line per step by default (--output table); --output json prints the API's JSON.
    """
    found = api(config, "GET", f"/api/v1/events/{q(event_id)}/timeline")
    if as_json or (output is not None and output_format(output) is Output.json):
        emit(found, Output.json)
        return
    for line in format_timeline(found):
        typer.echo(line)
