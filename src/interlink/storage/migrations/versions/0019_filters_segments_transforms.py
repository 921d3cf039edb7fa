"""Content filters, segments and transformations (issue 16)

``subscriptions.filter`` (CEL, as written: segments are expanded when compiled, so changing a
segment re-targets every filter naming it) and ``subscriptions.transform`` (JSONata); the
tenant's ``segments`` (named CEL predicates), under the tenant policy on PostgreSQL; and
``deliveries.subscription_id``, the subscription that routed the delivery, whose
transformation the dispatcher applies. Nullable columns without defaults: no table rewrite.

Numbered 0019 while another branch takes 0018; renumbered on merge.

Revision ID: 0019
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from interlink.storage import rls

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("filter", sa.Text(), nullable=True))
    op.add_column("subscriptions", sa.Column("transform", sa.Text(), nullable=True))
    op.add_column("deliveries", sa.Column("subscription_id", sa.String(40), nullable=True))
    op.create_table(
        "segments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_segments_tenant_name"),
    )
    rls.protect("segments")


def downgrade() -> None:
    rls.unprotect("segments")
    op.drop_table("segments")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("subscription_id")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("transform")
        batch.drop_column("filter")
