"""Online backup and restore of the embedded default (SQLite), through SQLite's backup API.

``backup`` copies the live database in one step of the backup API: one read transaction, so
the copy is the database as of one commit (WAL mode lets Interlink keep writing meanwhile; the
copy holds no half-written batch). It writes beside the target and renames, so a target either
is a whole backup or is not there. ``restore`` refuses while an Interlink runs on the database
(its process lock), checks the backup (``quick_check``, a known schema, secrets the configured
keys open) and puts it in place the same way. After a restore Interlink starts as after a
crash: leases are released, pending deliveries resume, delivered ones stay delivered.

The secrets key is deliberately not in a backup (a backup that carries its key protects
nothing): keep ``.interlink/secrets.key`` (or INTERLINK_SECRETS_KEY) apart from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from interlink.storage.private_files import create_private_file, private_dir
from interlink.storage.secrets_box import SecretBox, SecretUnreadable, is_sealed
from interlink.storage.sqlite.process_lock import lock_sqlite


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    path: Path
    bytes: int
    events: int
    last_event_seq: int | None
    schema: str | None


def backup(database: Path, target: Path) -> Summary:
    """A consistent copy of the live ``database`` at ``target`` (which must not exist)."""
    if not database.exists():
        raise BackupError(f"no database at {database}")
    if target.exists():
        raise BackupError(f"{target} exists: give a new file name (a backup never overwrites)")
    partial = target.with_name(f".{target.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    _copy(database, partial)
    os.replace(partial, target)
    return summary(target)


def restore(
    backup_file: Path, database: Path, keys: Sequence[str], replace: bool = False
) -> Summary:
    """Puts ``backup_file`` in place of ``database``; refused while Interlink runs on it."""
    checked = summary(backup_file)
    _check_secrets(backup_file, keys)
    lock = lock_sqlite(database)  # AlreadyRunning while an Interlink holds it
    try:
        if database.exists() and not replace:
            raise BackupError(
                f"{database} exists: restore with --replace to overwrite it (stop Interlink first)"
            )
        partial = database.with_name(f".{database.name}.restoring")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        _copy(backup_file, partial)
        # The old database's WAL and shared memory belong to the old file: never to the new.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + suffix).unlink()
        os.replace(partial, database)
    finally:
        lock.close()
    return checked


def summary(path: Path) -> Summary:
    """What a database file holds, after SQLite's ``quick_check`` of it."""
    if not path.exists():
        raise BackupError(f"no file at {path}")
    try:
        with contextlib.closing(_read_only(path)) as conn:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"{path} is damaged: {verdict}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not {"events", "alembic_version"} <= tables:
                raise BackupError(f"{path} is not an Interlink database")
            schema = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            count, last = conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable SQLite database: {exc}") from None
    return Summary(path, path.stat().st_size, count, last, schema[0] if schema else None)


def _copy(source: Path, target: Path) -> None:
    """``source`` copied page by page to the new file ``target`` (0600), in one read snapshot."""
    private_dir(target.parent)
    os.close(create_private_file(target))
    # The source may be the live database in WAL mode: opened read-write (it is only read),
    # since a read-only connection cannot make the -shm file a WAL reader needs.
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
        dst.commit()


def _check_secrets(path: Path, keys: Sequence[str]) -> None:
    """Refuses a backup whose stored secrets the configured keys cannot open."""
    with contextlib.closing(_read_only(path)) as conn:
        stored = [value for query in _SEALED for (value,) in conn.execute(query)]
    # sources.secrets is a JSON column: its ciphertext is stored as a JSON string.
    texts = [json.loads(v) if isinstance(v, str) and v.startswith('"') else v for v in stored]
    sealed = [v for v in texts if isinstance(v, str) and is_sealed(v)]
    if not sealed:
        return
    if not keys:
        raise BackupError(
            f"{path} holds sealed secrets and no secrets key is configured here: give the "
            "backup's key in INTERLINK_SECRETS_KEY (or its .interlink/secrets.key)"
        )
    box = SecretBox(keys)
    try:
        box.decrypt(sealed[0])
    except SecretUnreadable:
        raise BackupError(
            f"{path} holds secrets sealed with a key that is not configured here: give the "
            "backup's key in INTERLINK_SECRETS_KEY (or its .interlink/secrets.key)"
        ) from None


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


_SEALED = (
    "SELECT secrets FROM sources WHERE secrets IS NOT NULL LIMIT 1",
    "SELECT secret FROM endpoints WHERE secret IS NOT NULL LIMIT 1",
)
