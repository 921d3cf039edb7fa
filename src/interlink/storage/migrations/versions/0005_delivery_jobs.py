"""Bulk redrive and replay as tracked jobs; dead deliveries indexed for the dead-letter view

``jobs`` is a new table. The two partial indexes hold only dead deliveries, so listing and
redriving them (by tenant, or by endpoint) is an ordered index scan however many deliveries
succeeded, and the hot path pays for them only when a delivery dies or is redriven.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEAD = sa.text("status = 'dead'")
_ACTIVE = sa.text("status IN ('queued', 'running')")
Time = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filter", sa.JSON, nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=True),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("cursor", sa.String(64), nullable=True),
        sa.Column("cursor_end", sa.String(64), nullable=True),
        sa.Column("bucket", sa.JSON, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("started_at", Time, nullable=True),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_tenant", "jobs", ["tenant_id", "id"])
    op.create_index(
        "ix_jobs_active", "jobs", ["lease_until"], sqlite_where=_ACTIVE, postgresql_where=_ACTIVE
    )
    op.create_index(
        "ix_deliveries_dead_tenant",
        "deliveries",
        ["tenant_id", "id"],
        sqlite_where=_DEAD,
        postgresql_where=_DEAD,
    )
    op.create_index(
        "ix_deliveries_dead_endpoint",
        "deliveries",
        ["endpoint_id", "id"],
        sqlite_where=_DEAD,
        postgresql_where=_DEAD,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_dead_endpoint", table_name="deliveries")
    op.drop_index("ix_deliveries_dead_tenant", table_name="deliveries")
    op.drop_index("ix_jobs_active", table_name="jobs")
    op.drop_index("ix_jobs_tenant", table_name="jobs")
    op.drop_table("jobs")
