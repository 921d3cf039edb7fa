"""Runs Alembic migrations from code, so ``interlink up`` brings any database to head."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config

from interlink.storage.database import normalize_url, sqlite_path

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str, secrets_keys: Sequence[str] = ()) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    # The key ring, for migrations that encrypt what the database holds (0014); never an
    # option, which Alembic would be free to show.
    config.attributes["secrets_keys"] = tuple(secrets_keys)
    return config


def upgrade(url: str, revision: str = "head", secrets_keys: Sequence[str] = ()) -> None:
    """Brings the database to ``revision``; ``secrets_keys``: the key ring, needed when the
    database holds plaintext secrets to encrypt (migration 0014)."""
    # Alembic narrates every step at INFO; at start-up only problems are worth a line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(alembic_config(url, secrets_keys), revision)
    path = sqlite_path(url)
    if path is not None:
        # What a migration rewrote may still sit in old WAL frames: fold them into the file
        # (whose freed pages secure_delete zeroed) and truncate the WAL.
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def downgrade(url: str, revision: str, secrets_keys: Sequence[str] = ()) -> None:
    command.downgrade(alembic_config(url, secrets_keys), revision)
