"""Console sessions, server-side: made at login, found by the cookie's token, ended at logout.

The cookie holds a random token; the table holds its SHA-256 only, so a copy of the database
logs no one in. A session ends after ``idle`` seconds without a request and after ``longest``
seconds in all; ``last_seen_at`` is written at most once a minute (``TOUCH_SECONDS``; or each
half idle limit, when that is shorter), as an API key's ``last_used_at`` is, so a page view is
no write. Every lookup runs in the system scope
(the token names its tenant, as an API key does); what the session then does runs in its
tenant's scope (console/web.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import msgspec
import sqlalchemy as sa

from interlink.storage.database import Database
from interlink.storage.tables import api_keys, console_sessions
from interlink.storage.tenancy import system_scope

TOUCH_SECONDS = 60.0


class Session(msgspec.Struct, frozen=True):
    id_hash: str
    tenant_id: str | None  # None: an admin who has not picked a tenant yet
    admin: bool
    api_key_id: str | None  # the tenant key it was made with (None: the admin key)
    created_at: float
    last_seen_at: float
    expires_at: float

    def csrf_token(self, token: str) -> str:
        """The token every form and action of this session sends back: derived from the
        session's own secret, so it needs no storage and no other session can forge it."""
        return hmac.new(token.encode(), b"interlink console csrf", hashlib.sha256).hexdigest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _session(row: Any) -> Session:
    return Session(
        id_hash=row.id_hash,
        tenant_id=row.tenant_id,
        admin=bool(row.admin),
        api_key_id=row.api_key_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


class ConsoleSessions:
    def __init__(self, db: Database, idle: float, longest: float) -> None:
        self.db, self.idle, self.longest = db, idle, longest

    async def create(
        self, tenant_id: str | None, api_key_id: str | None, now: float
    ) -> tuple[Session, str]:
        """A new session and its token (the cookie's value), in plaintext this once: for a
        tenant key (``api_key_id``), or for the admin key (both None)."""
        token = secrets.token_urlsafe(32)
        admin = api_key_id is None
        session = Session(
            hash_token(token), tenant_id, admin, api_key_id, now, now, now + self.longest
        )
        with system_scope("console login"):
            async with self.db.write() as conn:
                # Expired sessions go as new ones come: no background task for a small table.
                await conn.execute(
                    console_sessions.delete().where(console_sessions.c.expires_at < now)
                )
                await conn.execute(
                    console_sessions.insert().values(msgspec.structs.asdict(session))
                )
        return session, token

    async def find(self, token: str, now: float) -> Session | None:
        """The live session of this token, or None (unknown, idle too long, past its limit, or
        its tenant key revoked or expired since)."""
        table, keys = console_sessions, api_keys
        # The key's state in the same read: no second query per request.
        key_live = sa.and_(
            keys.c.revoked_at.is_(None),
            sa.or_(keys.c.expires_at.is_(None), keys.c.expires_at > now),
        )
        query = (
            sa.select(table, key_live.label("key_live"))
            .select_from(table.outerjoin(keys, keys.c.id == table.c.api_key_id))
            .where(table.c.id_hash == hash_token(token))
        )
        with system_scope("console session lookup"):
            async with self.db.read() as conn:
                row = (await conn.execute(query)).first()
            if row is None:
                return None
            session = _session(row)
            over = now >= session.expires_at or now - session.last_seen_at >= self.idle
            if over or (session.api_key_id is not None and not row.key_live):
                await self.end(token)
                return None
            # Half the idle limit at most, so a session used steadily never looks idle.
            if now - session.last_seen_at >= min(TOUCH_SECONDS, self.idle / 2):
                async with self.db.write() as conn:
                    await conn.execute(
                        table.update()
                        .where(table.c.id_hash == session.id_hash)
                        .values(last_seen_at=now)
                    )
        return session

    async def choose_tenant(self, token: str, tenant_id: str) -> None:
        """An admin's session works for this tenant from now on."""
        table = console_sessions
        with system_scope("console tenant choice"):
            async with self.db.write() as conn:
                await conn.execute(
                    table.update()
                    .where(table.c.id_hash == hash_token(token), table.c.admin == sa.true())
                    .values(tenant_id=tenant_id)
                )

    async def end(self, token: str) -> None:
        with system_scope("console logout"):
            async with self.db.write() as conn:
                await conn.execute(
                    console_sessions.delete().where(console_sessions.c.id_hash == hash_token(token))
                )
