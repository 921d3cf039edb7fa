"""OAuth connections: a tenant's credentials for one partner's API, encrypted at rest

A new table only, so nothing existing is rewritten; the secrets and tokens in it are Fernet
ciphertexts. The lease columns let one process at a time refresh a connection's token.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("token_url", sa.String(length=2048), nullable=False),
        sa.Column("client_id", sa.String(length=500), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("token_issued_at", _TIME, nullable=True),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("refresh_due_at", _TIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("refresh_ok_count", sa.Integer(), nullable=False),
        sa.Column("refresh_failed_count", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_refreshed_at", _TIME, nullable=True),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("refresh_lease_until", _TIME, nullable=True),
        sa.Column("refresh_lease_owner", sa.String(length=64), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("deleted_at", _TIME, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_connections_tenant", "connections", ["tenant_id", "id"])
    op.create_index("ix_connections_refresh_due", "connections", ["refresh_due_at"])


def downgrade() -> None:
    op.drop_index("ix_connections_refresh_due", table_name="connections")
    op.drop_index("ix_connections_tenant", table_name="connections")
    op.drop_table("connections")
