"""Row-level security: every tenant table shows a transaction only its tenant's rows

On PostgreSQL each tenant table (``tenants``, and every table with a ``tenant_id`` column, found
in the live schema by ``interlink.storage.rls``) gets row-level security enabled and FORCEd, so
the table's owner is bound too, and the ``tenant_isolation`` policy: a row is visible and
writable when its tenant is the transaction's ``interlink.tenant_id`` setting or the transaction
runs in the system scope. With neither set, nothing is. A later migration that creates a tenant
table calls ``rls.protect`` for it.

A no-op on SQLite, where isolation is the tenant filter in every query.

Live-safe: no rewrite; each ALTER takes its table's lock for an instant. From here on a
connection that sets no scope sees no rows, which is why the application sets one in every
transaction (storage/database.py).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from interlink.storage import rls

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in rls.tenant_tables_sync(bind):
        rls.protect(table)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in rls.tenant_tables_sync(bind):
        rls.unprotect(table)
