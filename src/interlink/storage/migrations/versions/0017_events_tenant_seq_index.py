"""A tenant's events by log position: ``ix_events_tenant_seq`` (PostgreSQL)

A stream's replay (storage/stream_log.replay: one tenant's events in (after, upto], in log
order) otherwise walks either ``ix_events_seq`` over every tenant's events in the range,
filtering the others out, or ``ix_events_tenant_id`` over every event the tenant ever had,
then sorts: a tenant with a small share of a long log, resuming after a short drop, pays for
one or the other. With ``(tenant_id, seq)`` it reads its own rows in the range and no more.

``events`` is partitioned by day on PostgreSQL: the index is made ``ON ONLY`` the parent
(invalid, and partitions made from then on get theirs), then built ``CONCURRENTLY`` on each
existing partition and attached; once every partition's is attached the parent's is valid.
Appends go on meanwhile. SQLite is left alone: there replay walks the rowid (``seq``) range of
the positions missed, and every index costs the single writer its share of each append.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_events_tenant_seq"
_PARTITIONS = sa.text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON ONLY events (tenant_id, seq)")
        for (partition,) in bind.execute(_PARTITIONS).all():
            name = f"{partition}_tenant_seq"[:63]
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {partition} (tenant_id, seq)"
            )
            attached = bind.execute(
                sa.text(
                    "SELECT 1 FROM pg_inherits WHERE inhrelid = CAST(:i AS regclass) "
                    "AND inhparent = CAST(:p AS regclass)"
                ),
                {"i": name, "p": INDEX},
            ).first()
            if attached is None:
                op.execute(f"ALTER INDEX {INDEX} ATTACH PARTITION {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Dropping the parent's index drops every partition's attached to it.
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
