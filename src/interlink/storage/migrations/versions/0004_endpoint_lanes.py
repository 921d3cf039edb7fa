"""Endpoint lanes: ordering per key, concurrency, rate limit, circuit breaker and health

Endpoints gain their sending policy (ordering mode, what a dead head does, concurrency, rate
limit, circuit-breaker policy, how long failing disables them); deliveries carry their event's
ordering key, so an ordered endpoint's next head is found by index; and each endpoint's shared
lane state (breaker, token bucket, pacing horizon, latency, failing streak) gets a row of its
own, apart from the endpoint's configuration, because the dispatchers write it all the time.

Live-safe: new columns are nullable or have constant defaults (no rewrite on SQLite or
PostgreSQL 11+); the index over deliveries is built CONCURRENTLY on PostgreSQL.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEADS = sa.text("key IS NOT NULL AND status IN ('pending', 'scheduled', 'in_flight', 'dead')")


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column("ordering", sa.String(16), nullable=False, server_default="unordered")
        )
        batch.add_column(
            sa.Column("on_head_dead", sa.String(8), nullable=False, server_default="wait")
        )
        batch.add_column(sa.Column("concurrency", sa.Integer, nullable=False, server_default="32"))
        batch.add_column(sa.Column("rate_limit", sa.JSON, nullable=True))
        batch.add_column(sa.Column("breaker", sa.JSON, nullable=True))
        batch.add_column(sa.Column("disable_after_seconds", sa.Float, nullable=True))
    op.add_column("deliveries", sa.Column("key", sa.String(300), nullable=True))
    op.create_table(
        "endpoint_lanes",
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("breaker", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_deliveries_key_head",
            "deliveries",
            ["endpoint_id", "key", "event_seq"],
            sqlite_where=_HEADS,
            postgresql_where=_HEADS,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_deliveries_key_head", table_name="deliveries", postgresql_concurrently=True
        )
    op.drop_table("endpoint_lanes")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("key")
    with op.batch_alter_table("endpoints") as batch:
        for column in (
            "disable_after_seconds",
            "breaker",
            "rate_limit",
            "concurrency",
            "on_head_dead",
        ):
            batch.drop_column(column)
        batch.drop_column("ordering")
