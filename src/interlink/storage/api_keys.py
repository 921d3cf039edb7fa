"""Tenants' API keys: stored as a SHA-256 of the key (never the key), listed, labelled, revoked.

Every request looks its key up here, in the database, so a revoked or expired key is refused by
every process from the commit of its revocation on: there is no per-process cache to go stale.
``last_used_at`` is written at most once a minute per key and process: an exact figure would
be a write per request.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec
import sqlalchemy as sa

from interlink.domain.ids import new_id, new_secret
from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.tables import api_keys

KEY_PREFIX = "ik_"
_SHOWN_PREFIX = 10  # characters of a key kept to tell keys apart ("ik_" and 7 of its 43)
TOUCH_SECONDS = 60.0


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    label: str | None
    prefix: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        label=row.label,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


async def insert_key(
    conn: Any, tenant_id: str, label: str | None = None, expires_at: float | None = None
) -> tuple[ApiKey, str]:
    """A new key for the tenant, in the caller's transaction: the record and the key itself,
    in plaintext this once."""
    plaintext = new_secret(KEY_PREFIX, 32)
    key = ApiKey(
        id=new_id("api_key"),
        tenant_id=tenant_id,
        label=label,
        prefix=plaintext[:_SHOWN_PREFIX],
        created_at=time.time(),
        expires_at=expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    values = msgspec.structs.asdict(key)
    await conn.execute(api_keys.insert().values(**values, key_hash=hash_key(plaintext)))
    return key, plaintext


class ApiKeys:
    def __init__(self, db: Database, touch_seconds: float = TOUCH_SECONDS) -> None:
        self.db = db
        self._touch_seconds = touch_seconds
        self._touched: dict[str, float] = {}  # key id → when this process last wrote its use

    async def create(
        self, tenant_id: str, label: str | None = None, expires_at: float | None = None
    ) -> tuple[ApiKey, str]:
        async with self.db.write() as conn:
            return await insert_key(conn, tenant_id, label, expires_at)

    async def tenant_for_key(self, plaintext: str, now: float | None = None) -> str | None:
        """The tenant of a live key (not revoked, not expired), or None; records its use."""
        found = await self.live_key(plaintext, now)
        return None if found is None else found[1]

    async def live_key(self, plaintext: str, now: float | None = None) -> tuple[str, str] | None:
        """The id and tenant of a live key, or None; records its use."""
        now = time.time() if now is None else now
        c = api_keys.c
        query = sa.select(c.id, c.tenant_id).where(
            c.key_hash == hash_key(plaintext),
            c.revoked_at.is_(None),
            sa.or_(c.expires_at.is_(None), c.expires_at > now),
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        await self._touch(row.id, now)
        return str(row.id), str(row.tenant_id)

    async def _touch(self, key_id: str, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < self._touch_seconds:
            return
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[key_id] = now
        async with self.db.write() as conn:
            await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now)
            )

    def _mine(self, tenant_id: str, key_id: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id)

    async def list_keys(self, tenant_id: str, page: Page) -> tuple[list[ApiKey], str | None]:
        query = api_keys.select().where(api_keys.c.tenant_id == tenant_id)
        return await fetch_page(self.db, query, api_keys.c.id, page, _key)

    async def get(self, tenant_id: str, key_id: str) -> ApiKey | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(api_keys.select().where(*self._mine(tenant_id, key_id)))
            ).first()
        return None if row is None else _key(row)

    async def set_label(self, tenant_id: str, key_id: str, label: str | None) -> ApiKey | None:
        async with self.db.write() as conn:
            await conn.execute(
                api_keys.update().where(*self._mine(tenant_id, key_id)).values(label=label)
            )
        return await self.get(tenant_id, key_id)

    async def revoke(self, tenant_id: str, key_id: str, now: float | None = None) -> bool:
        """Revokes a live key of the tenant; False if it has none by that id (or it is revoked
        already). Refused from the commit on, by every process."""
        async with self.db.write() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(*self._mine(tenant_id, key_id), api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time() if now is None else now)
            )
        return bool(result.rowcount)
