"""Kafka endpoints: ``endpoints.kafka``, where a ``kind = 'kafka'`` endpoint produces

A nullable JSON column (cluster, topic, key template: domain.kafka.KafkaTarget); the kind
column (0016) already holds 'kafka' in its eight characters. A Kafka endpoint's url is '' like a
pull endpoint's. Nothing else changes: its deliveries are the same rows, claimed by the same
dispatcher.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("endpoints", sa.Column("kafka", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("kafka")
