"""What every client command shares: settings, the API client, errors and output.

Client commands import only this, typer and httpx: the server (litestar, sqlalchemy, uvicorn)
is imported by the commands that run it, so ``interlink --help`` and an API call start fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from interlink import config as config_module
from interlink.config import STATE_DIR, ConfigError, Settings

if TYPE_CHECKING:
    import ssl

    import httpx


class Output(StrEnum):
    json = "json"
    table = "table"


ConfigOpt = Annotated[
    str | None, typer.Option("--config", help="TOML config file.", metavar="FILE")
]
OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="json (the default; INTERLINK_OUTPUT changes it) or table.",
        show_default=False,
    ),
]
AfterOpt = Annotated[
    str | None,
    typer.Option("--after", help="From this time (ISO 8601 or epoch seconds).", metavar="TIME"),
]
BeforeOpt = Annotated[
    str | None,
    typer.Option("--before", help="Until this time (ISO 8601 or epoch seconds).", metavar="TIME"),
]
TypeOpt = Annotated[
    str | None, typer.Option("--type", help="Only events of this type.", metavar="TYPE")
]
LimitOpt = Annotated[int, typer.Option(help="At most this many (newest first).", metavar="N")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` in red on stderr; the caller raises the returned Exit."""
    typer.secho(message, fg="red", err=True)
    return typer.Exit(code)


def settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return config_module.load(config, **overrides)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def admin_key_path() -> Path:
    return STATE_DIR / "admin.key"


def read_admin_key(current: Settings) -> str:
    """The admin key from INTERLINK_ADMIN_KEY, the config, or the file `up` wrote.

    Never makes one: a key made here would not be the server's, and every call would be 401.
    """
    key = os.environ.get("INTERLINK_ADMIN_KEY") or current.admin_key
    if key:
        return key
    path = admin_key_path()
    if path.exists():
        return path.read_text().strip()
    raise fail(
        f"no admin key: {path.resolve()} does not exist (`interlink up` writes it in the "
        "directory it runs in). Run this from that directory, or set INTERLINK_ADMIN_KEY.",
        2,
    )


def client(config: str | None, admin: bool = False) -> httpx.Client:
    import httpx

    current = settings(config)
    base = os.environ.get("INTERLINK_API_URL", current.public_url)
    if admin:
        key = read_admin_key(current)
    else:
        key = os.environ.get("INTERLINK_API_KEY", "")
        if not key:
            raise fail("set INTERLINK_API_KEY to a tenant's API key", 2)
    return httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
        verify=_tls(base),
    )


def _tls(base: str) -> ssl.SSLContext | bool:
    """Verified TLS for an https URL; for plain http a context that trusts nothing.

    Loading the CA bundle costs about a tenth of a second a call; over http it is never used
    (redirects are not followed), and if TLS ever were attempted it would fail, not go unchecked.
    """
    import ssl

    if base.lower().startswith("https:"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def call(c: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        response = c.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach Interlink at {c.base_url}: {exc}") from None
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title")
        except ValueError:
            detail = response.text[:200]
        raise fail(f"{response.status_code}: {detail}")
    return response.json() if response.content else None


def api(config: str | None, method: str, path: str, admin: bool = False, **kwargs: Any) -> Any:
    """One request with a fresh client; the answer's JSON."""
    with client(config, admin=admin) as c:
        return call(c, method, path, **kwargs)


def q(value: str) -> str:
    """A path segment, quoted."""
    return quote(value, safe="")


def params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def output_format(chosen: Output | None) -> Output:
    if chosen is not None:
        return chosen
    configured = os.environ.get("INTERLINK_OUTPUT", "json").lower()
    try:
        return Output(configured)
    except ValueError:
        raise fail(f"INTERLINK_OUTPUT: json or table, not {configured!r}", 2) from None


def emit(data: Any, chosen: Output | None = None, columns: Sequence[str] = ()) -> None:
    """Print an API answer: JSON as the API gave it, or a table (a list) or key: value lines."""
    if output_format(chosen) is Output.json:
        typer.echo(json.dumps(data, indent=2))
    elif isinstance(data, list):
        typer.echo("\n".join(table(data, columns)))
    else:
        typer.echo("\n".join(record(data)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return json.dumps(value, separators=(",", ":"))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> list[str]:
    """Aligned columns with a header; ``columns`` picks and orders them (default: all)."""
    if not rows:
        return ["(none)"]
    names = list(columns) or list(rows[0])
    cells = [[_cell(row.get(name)) for name in names] for row in rows]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(names)]
    lines = ["  ".join(n.upper().ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


def record(data: dict[str, Any]) -> list[str]:
    """One ``key: value`` line per field."""
    if not data:
        return ["(none)"]
    width = max(len(k) for k in data)
    return [f"{k + ':':<{width + 1}} {_cell(v)}" for k, v in data.items()]
