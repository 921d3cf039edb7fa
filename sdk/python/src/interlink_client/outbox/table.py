"""The ``interlink_outbox`` table: its SQLAlchemy definition, and its DDL per dialect (for
migrations written by hand or with Alembic: docs/services.md)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

CHANNEL = "interlink_outbox"  # the NOTIFY channel relays LISTEN on (PostgreSQL)

metadata = sa.MetaData()

outbox = sa.Table(
    "interlink_outbox",
    metadata,
    # Ids only grow (SQLite: AUTOINCREMENT, never a deleted row's id again): the id orders a
    # key's events and is their default idempotency key, so it must never be reused.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.Identity(always=False),
        primary_key=True,
    ),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),  # JSON, encoded by publish()
    sa.Column("event_key", sa.Text(), nullable=True),
    sa.Column("idempotency_key", sa.Text(), nullable=True),
    sa.Column("occurred_at", sa.Float(), nullable=False),  # epoch seconds
    sa.Column("sent_at", sa.Float(), nullable=True),
    # A row Interlink refused for good (a 4xx such as a catalog schema's 422): set aside with the
    # refusal, so that it does not stop every row behind it.
    sa.Column("failed_at", sa.Float(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sqlite_autoincrement=True,
)

# What the relay scans: the rows still to ship, in id order; sent rows cost nothing here.
unsent_index = sa.Index(
    "interlink_outbox_unsent",
    outbox.c.id,
    postgresql_where=sa.and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None)),
    sqlite_where=sa.and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None)),
)


def create_table(conn: sa.Connection) -> None:
    """Creates the table and its index if they are missing (tests, scripts; prefer a
    migration in a service)."""
    metadata.create_all(conn)


def ddl(dialect: str) -> str:
    """The ``CREATE TABLE`` and ``CREATE INDEX`` statements for ``postgresql`` or ``sqlite``."""
    dialects = {"postgresql": postgresql.dialect, "sqlite": sqlite.dialect}
    if dialect not in dialects:
        raise ValueError(f"no outbox DDL for {dialect!r}: postgresql or sqlite")
    target = dialects[dialect]()
    compiled = str(CreateTable(outbox).compile(dialect=target)).strip()
    table = "\n".join(line.rstrip().replace("\t", "    ") for line in compiled.splitlines())
    index = str(CreateIndex(unsent_index).compile(dialect=target)).strip()
    return f"{table};\n\n{index};\n"
