"""``interlink backup`` and ``interlink restore``: the embedded default's database, online.

On PostgreSQL, the database's own tools do it: ``scripts/pg-backup.sh`` (pg_dump/pg_restore).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interlink.cli._api import ConfigOpt, fail, settings

_PG = "on PostgreSQL, back up and restore with scripts/pg-backup.sh (pg_dump, pg_restore)"

FileArg = Annotated[Path, typer.Argument(help="The backup file.", metavar="FILE")]


def _database(config: str | None) -> Path:
    from interlink.storage.database import sqlite_path

    path = sqlite_path(settings(config).database_url)
    if path is None:
        raise fail(_PG, 2)
    return path


def backup(file: FileArg, config: ConfigOpt = None) -> None:
    """Copy the SQLite database to FILE, consistently, while Interlink runs.

    The copy is the database as of one commit. The secrets key is not in it: keep
    .interlink/secrets.key (or INTERLINK_SECRETS_KEY) apart from the backup, safely.
    """
    from interlink.storage.sqlite.backup import BackupError
    from interlink.storage.sqlite.backup import backup as run

    try:
        done = run(_database(config), file)
    except BackupError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"backed up {done.events:,} events ({done.bytes / 1e6:.1f} MB, schema {done.schema}) "
        f"to {done.path}; the secrets key is not in it"
    )


def restore(
    file: FileArg,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite the database that is there.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Put a backup in place of the SQLite database (stop Interlink first).

    Interlink then starts as after a crash: pending deliveries resume, delivered ones are not
    sent again. The configured secrets key must be the backup's.
    """
    from interlink.config import STATE_DIR
    from interlink.storage.sqlite.backup import BackupError
    from interlink.storage.sqlite.backup import restore as run
    from interlink.storage.sqlite.process_lock import AlreadyRunning

    current = settings(config)
    database = _database(config)
    try:
        key_file = STATE_DIR / "secrets.key"  # read, never made here: it must be the backup's
        keys = current.secrets_key or ((key_file.read_text().strip(),) if key_file.exists() else ())
        done = run(file, database, keys, replace=replace)
    except (BackupError, AlreadyRunning) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"restored {done.events:,} events (schema {done.schema}) to {database}")
