"""``interlink jobs``: bulk redrive and replay, tracked and paced."""

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
    Output,
    OutputOpt,
    TypeOpt,
    api,
    call,
    emit,
    params,
    q,
)

app = typer.Typer(no_args_is_help=True, help="Bulk redrive and replay, tracked and paced.")

FINISHED_JOB = ("succeeded", "failed", "cancelled")
COLUMNS = ("id", "kind", "status", "total", "done", "skipped", "rate", "eta_seconds", "created_at")
JobId = Annotated[str, typer.Argument(help="The job's id (job_…).", metavar="JOB_ID")]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", help="Items per second at most (default: configured).", metavar="N"),
]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="Endpoint id.", metavar="ENDPOINT_ID")
]


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
    return f"/api/v1/jobs/{q(job_id)}{action}"


@app.command("redrive")
def redrive(
    endpoint: EndpointOpt = None,
    type: TypeOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    rate: RateOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send dead deliveries again (all of them, or those matching), as a paced job."""
    body = params(endpoint_id=endpoint, type=type, after=after, before=before, rate=rate)
    emit(api(config, "POST", "/api/v1/jobs/redrive", json=body))


@app.command("replay")
def replay(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint to send the events to.")],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Event id(s).", metavar="EVENT_ID")
    ] = None,
    type: TypeOpt = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Source id.", metavar="SOURCE_ID")
    ] = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    rate: RateOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Send events again to one endpoint (by id, or by type, source and time), as a paced job."""
    body = params(
        endpoint_id=endpoint_id,
        event_ids=event or None,
        type=type,
        source_id=source,
        after=after,
        before=before,
        rate=rate,
    )
    emit(api(config, "POST", "/api/v1/jobs/replay", json=body))


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="queued | running | succeeded | …", metavar="STATUS")
    ] = None,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List jobs, newest first."""
    emit(api(config, "GET", "/api/v1/jobs", params=params(status=status))["data"], output, COLUMNS)


@app.command("show")
def show(
    job_id: JobId,
    watch: Annotated[
        bool, typer.Option("--watch", help="One progress line a second until it is over.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between looks (--watch).", metavar="SECONDS")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json.")] = False,
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """A job and its progress; --watch follows it to the end, a line a look (Ctrl-C stops)."""
    job: dict[str, Any] = {}
    chosen = Output.json if as_json else output
    with _api.client(config) as c:
        try:
            while True:
                job = call(c, "GET", _job_path(job_id))
                if not watch:
                    emit(job, chosen)
                    break
                typer.echo(json.dumps(job) if chosen is Output.json else format_job(job))
                if job["status"] in FINISHED_JOB:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    if job.get("status") == "failed":
        raise typer.Exit(1)


@app.command("cancel")
def cancel(job_id: JobId, output: OutputOpt = None, config: ConfigOpt = None) -> None:
    """Stop a job after the batch in hand."""
    emit(api(config, "POST", _job_path(job_id, "/cancel")), output)
