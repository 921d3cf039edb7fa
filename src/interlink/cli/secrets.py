"""``interlink secrets``: the key that encrypts every stored secret, and its rotation."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, fail, settings

app = typer.Typer(
    no_args_is_help=True,
    help="The secrets key (INTERLINK_SECRETS_KEY) that encrypts stored secrets, and its rotation.",
)


@app.command("new-key")
def new_key() -> None:
    """Print a new secrets key (for INTERLINK_SECRETS_KEY)."""
    from interlink.storage.secrets_box import SecretBox

    typer.echo(SecretBox.new_key())


@app.command("rotate-key")
def rotate_key(
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Rows per batch.", metavar="ROWS")
    ] = 200,
    config: ConfigOpt = None,
) -> None:
    """Re-encrypt every stored secret (sources', endpoints', connections') under the first key.

    Put the new key first in INTERLINK_SECRETS_KEY, keep the old ones after it, and restart
    Interlink's processes with that list; then run this (it may run while they do). Rows already
    under the first key are left alone, so a run that was stopped can simply run again. Once it
    has finished, the old keys can go. Works on the database directly (no API).
    """
    from interlink.storage.database import Database
    from interlink.storage.sealed_secrets import rotate_key as rotate
    from interlink.storage.secrets_box import SecretBox, SecretUnreadable, database_keys

    current = settings(config)
    db = Database(current.database_url)
    try:
        box = SecretBox(database_keys(current.secrets_key, sqlite=db.is_sqlite))
    except ValueError as exc:
        asyncio.run(db.close())
        raise fail(f"secrets_key: {exc}", 2) from None

    async def run() -> dict[str, int]:
        try:
            return await rotate(db, box, batch)
        finally:
            await db.close()

    try:
        counts = asyncio.run(run())
    except SecretUnreadable as exc:
        raise fail(f"{exc}: keep the old key in the list") from None
    done = ", ".join(f"{n} {table}" for table, n in counts.items())
    typer.echo(f"re-encrypted under the first key: {done}")
