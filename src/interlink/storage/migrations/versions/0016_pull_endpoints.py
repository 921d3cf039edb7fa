"""Pull endpoints: ``endpoints.kind``, push (the dispatcher sends) or pull (consumers claim)

One column with a default, so every existing endpoint is a push endpoint as before. A pull
endpoint has no URL; the column stays NOT NULL and holds '' for it (the API shows none), which
spares SQLite a table rebuild. Its deliveries are the same rows as a push endpoint's.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "endpoints",
        sa.Column("kind", sa.String(length=8), nullable=False, server_default="push"),
    )


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("kind")
