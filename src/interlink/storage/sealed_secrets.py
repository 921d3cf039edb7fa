"""Sources' verifying secrets and endpoints' signing secrets at rest: sealed in the secrets box.

Each row holds its whole list of secrets (with their expiries) as one ciphertext: one decrypt
reads them all, and a rotation rewrites one value. ``sources.secrets`` (a JSON column) holds the
ciphertext as a JSON string and ``endpoints.secret`` as text. Rows written before encryption at
rest (a JSON list; a bare ``whsec_`` string) are still read, until migration 0014 or
``interlink secrets rotate-key`` seals them.

``rotate_key`` re-encrypts every stored secret (these and the OAuth connections') under the
box's first key, a batch at a time, online: each row is written only if it is not already
under the first key (so a run that was stopped resumes where it was), and only if it still
holds what was read (so a rotation or a token refresh written meanwhile is never undone).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from interlink.domain.models import SigningSecret
from interlink.storage.database import Database
from interlink.storage.secrets_box import SecretBox, is_sealed
from interlink.storage.tables import connections, endpoints, sources
from interlink.storage.tenancy import system_scope


def _item(secret: SigningSecret) -> str | dict[str, Any]:
    # A secret without expiry is the bare string: the shape rows had before they were sealed.
    if secret.expires_at is None:
        return secret.value
    return {"value": secret.value, "expires_at": secret.expires_at}


def _secret(item: Any) -> SigningSecret:
    if isinstance(item, str):
        return SigningSecret(item)
    return msgspec.convert(item, SigningSecret)


def seal(box: SecretBox, secrets: Sequence[SigningSecret]) -> str:
    """The ciphertext that stands for ``secrets`` in a row."""
    return box.encrypt(json.dumps([_item(s) for s in secrets], separators=(",", ":")))


def open_secrets(box: SecretBox, stored: object) -> tuple[SigningSecret, ...]:
    """The secrets a row holds: sealed, or plaintext from before (a list; a bare string)."""
    if isinstance(stored, str):
        if not is_sealed(stored):
            return (SigningSecret(stored),)
        stored = json.loads(box.decrypt(stored))
    if not isinstance(stored, list):
        raise ValueError("stored secrets are neither a ciphertext nor a list")
    return tuple(_secret(item) for item in stored)


def resealed(box: SecretBox, stored: object) -> str | None:
    """``stored`` sealed under the first key, or None if it already is."""
    if isinstance(stored, str) and is_sealed(stored):
        return None if box.under_first_key(stored) else box.rotate(stored)
    return seal(box, open_secrets(box, stored))


def _token(box: SecretBox, stored: str | None) -> str | None:
    # A connection's secret or token: a ciphertext (connections were encrypted from the start).
    if stored is None or box.under_first_key(stored):
        return None
    return box.rotate(stored)


Reseal = Callable[[SecretBox, Any], Any]


async def reseal_table(
    db: Database,
    box: SecretBox,
    table: sa.Table,
    columns: Sequence[sa.Column[Any]],
    reseal: Reseal,
    batch: int = 200,
) -> int:
    """Re-encrypts ``columns`` of every row of ``table`` that needs it; the rows rewritten."""
    rewritten, after = 0, ""
    while True:
        async with db.read() as conn:
            query = sa.select(table.c.id, *columns).where(table.c.id > after)
            rows = (await conn.execute(query.order_by(table.c.id).limit(batch))).all()
        if not rows:
            return rewritten
        for row in rows:
            rewritten += await _reseal_until_done(db, box, table, columns, reseal, row)
        after = rows[-1].id


_ROW_TRIES = 10


async def _reseal_until_done(
    db: Database,
    box: SecretBox,
    table: sa.Table,
    columns: Sequence[sa.Column[Any]],
    reseal: Reseal,
    row: Any,
) -> int:
    for _ in range(_ROW_TRIES):
        done = await _reseal_row(db, box, table, columns, reseal, row)
        if done is not None:
            return done
        async with db.read() as conn:  # changed since it was read: read it again
            query = sa.select(table.c.id, *columns).where(table.c.id == row.id)
            row = (await conn.execute(query)).first()
        if row is None:  # deleted meanwhile
            return 0
    raise RuntimeError(f"{table.name} {row.id} changed {_ROW_TRIES} times while re-encrypted")


async def _reseal_row(
    db: Database,
    box: SecretBox,
    table: sa.Table,
    columns: Sequence[sa.Column[Any]],
    reseal: Reseal,
    row: Any,
) -> int | None:
    """1 if the row was rewritten, 0 if it needed nothing, None if it changed since read."""
    values: dict[str, Any] = {}
    where: list[sa.ColumnElement[bool]] = [table.c.id == row.id]
    for column in columns:
        old = getattr(row, column.name)
        if isinstance(column.type, sa.JSON):
            # JSON has no equality on PostgreSQL: compare the text, as stored.
            where.append(sa.cast(column, sa.Text) == json.dumps(old, separators=(", ", ": ")))
        else:
            where.append(column.is_not_distinct_from(old))
        new = reseal(box, old)
        if new is not None:
            values[column.name] = new
    if not values:
        return 0
    async with db.write() as conn:
        result = await conn.execute(table.update().where(*where).values(values))
    return 1 if result.rowcount else None


class SealedTable(NamedTuple):
    table: sa.Table
    columns: tuple[sa.Column[Any], ...]
    reseal: Reseal


# What holds secrets: each table, its secret columns, and how each is re-encrypted.
SEALED: dict[str, SealedTable] = {
    "sources": SealedTable(sources, (sources.c.secrets,), resealed),
    "endpoints": SealedTable(endpoints, (endpoints.c.secret,), resealed),
    "connections": SealedTable(
        connections,
        (connections.c.client_secret, connections.c.access_token, connections.c.refresh_token),
        _token,
    ),
}


async def rotate_key(db: Database, box: SecretBox, batch: int = 200) -> dict[str, int]:
    """Every stored secret re-encrypted under the first key: the rows rewritten, by table."""
    counts: dict[str, int] = {}
    with system_scope("secrets rotate-key: every tenant's secrets"):
        for name, (table, columns, reseal) in SEALED.items():
            counts[name] = await reseal_table(db, box, table, columns, reseal, batch)
    return counts
