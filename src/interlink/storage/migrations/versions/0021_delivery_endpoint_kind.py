"""Pull deliveries out of the push claim's way, and each ordered key's head by index

``deliveries.endpoint_kind`` copies the endpoint's kind onto its deliveries (an endpoint's kind
never changes), so the two claims read separate partial indexes of due deliveries:

* ``ix_deliveries_due_push`` (``next_attempt_at``; push deliveries only) replaces
  ``ix_deliveries_due_active``: the dispatcher's claim no longer walks past a pull endpoint's
  backlog waiting for its consumers.
* ``ix_deliveries_due_pull`` (``endpoint_id, next_attempt_at``; pull deliveries only): a
  consumer's claim reads its own endpoint's due deliveries, not every endpoint's.

``ix_deliveries_key_head`` (``endpoint_id, key, event_seq``) now holds keyless live deliveries
too: an ordered pull claim finds each key's head by one index probe per key (walking the
endpoint's keys), and its keyless deliveries under ``key IS NULL``, instead of testing every
due delivery for a live one before it (which walked the whole backlog per claim). Every live
delivery is in it, so the maintenance pass's "any live delivery in this range" reads it too.

Indexes are built ``CONCURRENTLY`` on PostgreSQL (reads and writes go on); the new column has a
constant default (no table rewrite) and only existing pull endpoints' deliveries are updated.

Revision ID: 0021
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = "status IN ('pending', 'scheduled', 'in_flight')"
_LIVE = "status IN ('pending', 'scheduled', 'in_flight', 'dead')"
_NEW: dict[str, tuple[str, str]] = {
    "ix_deliveries_due_push": ("(next_attempt_at)", f"{_DUE} AND endpoint_kind = 'push'"),
    "ix_deliveries_due_pull": (
        "(endpoint_id, next_attempt_at)",
        f"{_DUE} AND endpoint_kind = 'pull'",
    ),
    "ix_deliveries_key_head_all": ("(endpoint_id, key, event_seq)", _LIVE),
}


def _create(concurrently: bool, indexes: dict[str, tuple[str, str]]) -> None:
    how = "CONCURRENTLY " if concurrently else ""
    for name, (columns, where) in indexes.items():
        op.execute(f"CREATE INDEX {how}IF NOT EXISTS {name} ON deliveries {columns} WHERE {where}")


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("endpoint_kind", sa.String(length=8), nullable=False, server_default="push"),
    )
    op.execute(
        "UPDATE deliveries SET endpoint_kind = 'pull'"
        " WHERE endpoint_id IN (SELECT id FROM endpoints WHERE kind = 'pull')"
    )
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_deliveries_due_active", table_name="deliveries")
        op.drop_index("ix_deliveries_key_head", table_name="deliveries")
        indexes = dict(_NEW)
        indexes["ix_deliveries_key_head"] = indexes.pop("ix_deliveries_key_head_all")
        _create(False, indexes)
        return
    with op.get_context().autocommit_block():
        _create(True, _NEW)
    # The new indexes are built before the old ones go: claims keep an index throughout.
    op.drop_index("ix_deliveries_due_active", table_name="deliveries")
    op.drop_index("ix_deliveries_key_head", table_name="deliveries")
    op.execute("ALTER INDEX ix_deliveries_key_head_all RENAME TO ix_deliveries_key_head")


def downgrade() -> None:
    op.drop_index("ix_deliveries_due_push", table_name="deliveries")
    op.drop_index("ix_deliveries_due_pull", table_name="deliveries")
    op.drop_index("ix_deliveries_key_head", table_name="deliveries")
    _create(
        False,
        {
            "ix_deliveries_due_active": ("(next_attempt_at)", _DUE),
            "ix_deliveries_key_head": (
                "(endpoint_id, key, event_seq)",
                f"key IS NOT NULL AND {_LIVE}",
            ),
        },
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("endpoint_kind")
