"""API keys: a label, an optional expiry, and when each was last used

Three nullable columns on ``api_keys``: nothing existing is rewritten, and a key without an
expiry never expires, as before.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("label", sa.String(length=200), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", _TIME, nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", _TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("label")
