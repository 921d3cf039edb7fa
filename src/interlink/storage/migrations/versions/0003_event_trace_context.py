"""Events keep the W3C trace context of the request that brought them

So one trace runs from the ingest request through routing to every delivery attempt, however
long the event waits in between. Nullable and without a default: adding it rewrites nothing.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("trace_context", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("trace_context")
