"""Reconciliation: a source's reconciler settings and the history of its runs

Two new tenant tables, so nothing existing is rewritten; both are put under row-level security
on PostgreSQL (``rls.protect``).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from interlink.storage import rls

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "source_reconcilers",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("api_url", sa.String(length=2048), nullable=False),
        sa.Column("interval_seconds", _TIME, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", _TIME, nullable=False),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("source_id"),
    )
    op.create_index(
        "ix_source_reconcilers_tenant", "source_reconcilers", ["tenant_id", "source_id"]
    )
    op.create_index("ix_source_reconcilers_due", "source_reconcilers", ["next_run_at"])
    counts = ("pulled", "missing", "corrected", "unchanged", "conflicts", "errors", "emitted")
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("since", _TIME, nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=True),
        *[
            sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            for name in (*counts, "superseded")
        ],
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reconciliation_runs_source", "reconciliation_runs", ["source_id", "started_at"]
    )
    op.create_index("ix_reconciliation_runs_tenant", "reconciliation_runs", ["tenant_id", "id"])
    rls.protect("source_reconcilers")
    rls.protect("reconciliation_runs")


def downgrade() -> None:
    rls.unprotect("reconciliation_runs")
    rls.unprotect("source_reconcilers")
    op.drop_table("reconciliation_runs")
    op.drop_table("source_reconcilers")
