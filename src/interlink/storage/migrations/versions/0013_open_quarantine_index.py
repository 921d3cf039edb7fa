"""Quarantine indexes: the open entries of a stage, and a tenant's entries of a stage

``ix_quarantine_open_stage``: what the retry of ``fetch_failed`` walks; without it the stage's
retry loop walks the whole quarantine by its primary key. Partial (open entries only), so it
stays as small as what is waiting. ``ix_quarantine_tenant_stage`` serves the API's list
filtered by stage, newest first. On PostgreSQL it is built
``CONCURRENTLY``, outside a transaction, so writers of the quarantine are not blocked while it
builds; SQLite has one writer and builds it in the migration's transaction.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_quarantine_open_stage": "(stage, id) WHERE resolved_at IS NULL",
    "ix_quarantine_tenant_stage": "(tenant_id, stage, id)",
}


def _run(statements: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for statement in statements:
                op.execute(statement.replace("INDEX ", "INDEX CONCURRENTLY ", 1))
    else:
        for statement in statements:
            op.execute(statement)


def upgrade() -> None:
    _run([f"CREATE INDEX IF NOT EXISTS {n} ON quarantine {c}" for n, c in _INDEXES.items()])


def downgrade() -> None:
    _run([f"DROP INDEX IF EXISTS {n}" for n in _INDEXES])
