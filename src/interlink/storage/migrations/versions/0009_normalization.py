"""Partner kits and normalization: a source's kit, canonical events, quarantine, entity states

Sources may name a partner kit; the log holds the canonical events made from a partner's
payload next to it (``origin`` 'normalized', ``derived_from`` the partner's event, with the
catalog schema version); ``quarantine`` keeps what could not be normalized or would make an
illegal transition; ``entity_states`` is where each entity of a kit stands. New nullable
columns, one with a constant default, and new tables: nothing is rewritten.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.Float(precision=53)


def upgrade() -> None:
    op.add_column("sources", sa.Column("kit", sa.String(100), nullable=True))
    op.add_column(
        "events",
        sa.Column("origin", sa.String(16), nullable=False, server_default="partner"),
    )
    op.add_column("events", sa.Column("derived_from", sa.String(40), nullable=True))
    op.add_column("events", sa.Column("schema_version", sa.Integer, nullable=True))
    op.create_table(
        "quarantine",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("source_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_index", sa.Integer),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("kit", sa.String(100)),
        sa.Column("kit_version", sa.String(40)),
        sa.Column("entity", sa.String(100)),
        sa.Column("entity_key", sa.String(300)),
        sa.Column("canonical", sa.JSON),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("resolved_at", Time),
        sa.Column("resolution", sa.String(20)),
    )
    op.create_index("ix_quarantine_tenant", "quarantine", ["tenant_id", "id"])
    op.create_index("ix_quarantine_entity", "quarantine", ["source_id", "entity", "entity_key"])
    op.create_index("ix_quarantine_event", "quarantine", ["event_id"])
    op.create_table(
        "entity_states",
        sa.Column("source_id", sa.String(40), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(100), nullable=False),
        sa.Column("ordinal", sa.Float(precision=53)),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("entity_states")
    op.drop_index("ix_quarantine_event", table_name="quarantine")
    op.drop_index("ix_quarantine_entity", table_name="quarantine")
    op.drop_index("ix_quarantine_tenant", table_name="quarantine")
    op.drop_table("quarantine")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("schema_version")
        batch.drop_column("derived_from")
        batch.drop_column("origin")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("kit")
