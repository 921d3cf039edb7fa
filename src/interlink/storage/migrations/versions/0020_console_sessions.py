"""Console sessions: a browser's login to /console, stored server-side by its hash

One row per session, found by the SHA-256 of the cookie's random token: the database never holds
a token a reader could replay. ``tenant_id`` is null while an admin has not picked a tenant yet;
the table is a tenant table (row-level security) like every other, and the login's lookup runs
in the system scope, as an API key's does. ``api_key_id`` names the tenant key the session was
made with, so that revoking the key (or its expiry) ends the session too.

Revision ID: 0020
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from interlink.storage import rls

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )
    # Expired sessions are deleted by their expiry (storage/console_sessions.py).
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])
    rls.protect("console_sessions")


def downgrade() -> None:
    rls.unprotect("console_sessions")
    op.drop_table("console_sessions")
