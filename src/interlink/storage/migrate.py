"""Runs Alembic migrations from code, so ``interlink up`` brings any database to head."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from interlink.storage.database import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    # Alembic narrates every step at INFO; at start-up only problems are worth a line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
