"""Secrets at rest: sources' and endpoints' secrets encrypted with the secrets key

Every plaintext ``sources.secrets`` list and ``endpoints.secret`` is replaced by its ciphertext
(storage/sealed_secrets.py), under the first of the keys ``migrate.upgrade`` is given (the
key ring of the process that migrates). A database without plaintext rows needs no key, so an
empty one migrates anywhere. ``endpoints.secret`` becomes text on PostgreSQL: a ciphertext of
several secrets outgrows the old 200 characters.

On SQLite the rewrite runs with ``secure_delete``, so the plaintext is zeroed in the pages it
leaves (``migrate.upgrade`` then truncates the WAL). On PostgreSQL the old row versions stay in
the table's files until vacuumed: docs/architecture.md says what to run.

Downgrade writes the plaintext back (an endpoint keeps its newest signing secret only).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from interlink.storage import rls
from interlink.storage.sealed_secrets import open_secrets, seal
from interlink.storage.secrets_box import SecretBox, is_sealed

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_sources = sa.table("sources", sa.column("id", sa.String), sa.column("secrets", sa.JSON))
_endpoints = sa.table("endpoints", sa.column("id", sa.String), sa.column("secret", sa.Text))


def _box() -> SecretBox:
    keys = context.config.attributes.get("secrets_keys") or ()
    if not keys:
        raise RuntimeError(
            "migration 0014 encrypts the plaintext secrets this database holds and needs the "
            "secrets key: run it through `interlink up` (or migrate.upgrade(url, secrets_keys=…))"
        )
    return SecretBox(keys)


def _sealed(stored: object) -> bool:
    return isinstance(stored, str) and is_sealed(stored)


def _rewrite(
    table: Any, column: str, sealed: bool, change: Callable[[SecretBox, object], object]
) -> None:
    """Rewrites with ``change`` the rows whose ``column`` is not yet ``sealed`` (or plaintext)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(sa.text(f"SELECT set_config('{rls.SCOPE_SETTING}', '{rls.SYSTEM}', true)"))
    else:
        op.execute(sa.text("PRAGMA secure_delete = ON"))
    rows = bind.execute(sa.select(table.c.id, table.c[column])).all()
    todo = [(row_id, stored) for row_id, stored in rows if _sealed(stored) != sealed]
    if not todo:
        return
    box = _box()
    for row_id, stored in todo:
        bind.execute(
            table.update().where(table.c.id == row_id).values({column: change(box, stored)})
        )


def _seal(box: SecretBox, stored: object) -> object:
    return seal(box, open_secrets(box, stored))


def _plain_list(box: SecretBox, stored: object) -> object:
    return [
        s.value if s.expires_at is None else {"value": s.value, "expires_at": s.expires_at}
        for s in open_secrets(box, stored)
    ]


def _plain_newest(box: SecretBox, stored: object) -> object:
    return open_secrets(box, stored)[-1].value


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("endpoints", "secret", type_=sa.Text(), existing_nullable=False)
    _rewrite(_sources, "secrets", True, _seal)
    _rewrite(_endpoints, "secret", True, _seal)


def downgrade() -> None:
    _rewrite(_sources, "secrets", False, _plain_list)
    _rewrite(_endpoints, "secret", False, _plain_newest)
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("endpoints", "secret", type_=sa.String(length=200), existing_nullable=False)
