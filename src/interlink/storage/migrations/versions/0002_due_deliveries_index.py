"""A partial index over the deliveries the dispatcher can claim, ordered by due time

The claim query asks for due deliveries earliest first; an index over only the live ones
(pending, scheduled, in flight) keeps it a short ordered scan however many deliveries have
succeeded or died.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("status IN ('pending', 'scheduled', 'in_flight')")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_due_active",
        "deliveries",
        ["next_attempt_at"],
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.drop_index("ix_deliveries_due", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.drop_index("ix_deliveries_due_active", table_name="deliveries")
