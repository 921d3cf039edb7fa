"""``interlink export``: a tenant's events in a window, with deliveries and attempts, to a file.

It streams ``GET /api/v1/export`` (NDJSON) to the file line by line, in constant memory; after
a dropped connection it resumes after the last whole line it wrote, and ``--resume`` does the
same for a file an earlier run left unfinished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from interlink.cli import _api
from interlink.cli._api import ConfigOpt

_RETRIES = 5


def export(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The file to write (NDJSON).", metavar="FILE")
    ],
    since: Annotated[
        str,
        typer.Option("--since", help="Received at or after (RFC 3339 or epoch).", metavar="TIME"),
    ],
    until: Annotated[
        str | None,
        typer.Option("--until", help="Received before (default: now).", metavar="TIME"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an unfinished FILE after its last line.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Export the tenant's events received in a window, each with its deliveries and attempts.

    One JSON object a line: {"event": …, "deliveries": [{"delivery": …, "attempts": […]}]}.
    Authenticates with INTERLINK_API_KEY (a tenant's key).
    """
    if output.exists() and not resume:
        raise _api.fail(f"{output} exists: give a new file, or --resume to continue it", 2)
    after = _last_whole_line(output) if resume and output.exists() else None
    written = 0
    with _api.client(config) as c, output.open("ab") as out:
        for attempt in range(_RETRIES + 1):
            try:
                n, after = _download(c, out, since, until, after)
                written += n
                break
            except _Interrupted as exc:
                written += exc.written
                after = exc.after
                if attempt == _RETRIES:
                    raise _api.fail(f"export interrupted: {exc}; run again with --resume") from None
                typer.secho(f"export interrupted ({exc}); resuming", err=True, fg="yellow")
    typer.echo(f"exported {written:,} events to {output}")


class _Interrupted(Exception):
    def __init__(self, why: str, written: int, after: str | None) -> None:
        super().__init__(why)
        self.written, self.after = written, after


def _download(
    c: object, out: BinaryIO, since: str, until: str | None, after: str | None
) -> tuple[int, str | None]:
    import httpx

    assert isinstance(c, httpx.Client)
    query = _api.params(since=since, until=until, resume_after=after)
    written = 0
    try:
        with c.stream("GET", "/api/v1/export", params=query, timeout=60) as response:
            if response.status_code >= 400:
                response.read()
                detail = response.json().get("detail", response.reason_phrase)
                raise _api.fail(f"{response.status_code}: {detail}")
            for line in response.iter_lines():
                if not line:
                    continue
                after = json.loads(line)["event"]["id"]
                out.write(line.encode() + b"\n")
                written += 1
            out.flush()
            os.fsync(out.fileno())
    except httpx.HTTPError as exc:
        out.flush()
        raise _Interrupted(type(exc).__name__, written, after) from None
    return written, after


def _last_whole_line(path: Path) -> str | None:
    """The event id of the file's last whole line; a partial line after it is cut off."""
    with path.open("rb+") as f:
        data_end = f.seek(0, os.SEEK_END)
        block = min(data_end, 1 << 20)
        f.seek(data_end - block)
        tail = f.read(block)
        cut = tail.rfind(b"\n")
        keep = data_end - block + cut + 1 if cut >= 0 else 0
        f.truncate(keep)
        if cut < 0:
            return None
        previous = tail[:cut].rfind(b"\n")
        last = tail[previous + 1 : cut]
    try:
        return str(json.loads(last)["event"]["id"])
    except (ValueError, KeyError, TypeError):
        raise _api.fail(
            f"{path}: its last line is not an export line; give a new file", 2
        ) from None
