"""Connections: a tenant's OAuth2 credentials for a partner's API, and the token they give.

The client secret and both tokens are encrypted before they are written and decrypted when
read (storage/secrets_box.py); in memory they are :class:`Secret` values whose ``repr`` hides
them. A refresh is one process's at a time: it takes a lease on the row first
(:meth:`Connections.take_lease`), and writes its outcome only while it still holds that lease.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from interlink.domain import token_refresh
from interlink.domain.ids import new_id
from interlink.domain.token_refresh import ConnectionFlow, ConnectionStatus
from interlink.storage.database import Database
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.sealed_secrets import SEALED, reseal_table
from interlink.storage.secrets_box import Secret, SecretBox
from interlink.storage.tables import connections

_ERROR_CHARS = 500


class Connection(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    partner: str
    flow: ConnectionFlow
    token_url: str
    client_id: str
    client_secret: Secret
    scopes: tuple[str, ...]
    access_token: Secret | None
    refresh_token: Secret | None
    token_issued_at: float | None
    expires_at: float | None
    refresh_due_at: float | None
    failing: bool  # the latest token request failed
    refresh_ok_count: int
    refresh_failed_count: int
    consecutive_failures: int
    last_error: str | None
    last_refreshed_at: float | None
    next_attempt_at: float | None  # when a failed refresh is tried again
    refresh_lease_until: float | None
    created_at: float
    updated_at: float

    def status(self, now: float) -> ConnectionStatus:
        return token_refresh.status(
            failing=self.failing,
            refresh_due_at=self.refresh_due_at,
            expires_at=self.expires_at,
            now=now,
        )


class Connections:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _connection(self, row: Any) -> Connection:
        def secret(ciphertext: str | None) -> Secret | None:
            return None if ciphertext is None else Secret(self.box.decrypt(ciphertext))

        return Connection(
            id=row.id,
            tenant_id=row.tenant_id,
            partner=row.partner,
            flow=ConnectionFlow(row.flow),
            token_url=row.token_url,
            client_id=row.client_id,
            client_secret=Secret(self.box.decrypt(row.client_secret)),
            scopes=tuple(row.scopes),
            access_token=secret(row.access_token),
            refresh_token=secret(row.refresh_token),
            token_issued_at=row.token_issued_at,
            expires_at=row.expires_at,
            refresh_due_at=row.refresh_due_at,
            failing=row.status == ConnectionStatus.FAILED.value,
            refresh_ok_count=row.refresh_ok_count,
            refresh_failed_count=row.refresh_failed_count,
            consecutive_failures=row.consecutive_failures,
            last_error=row.last_error,
            last_refreshed_at=row.last_refreshed_at,
            next_attempt_at=row.next_attempt_at,
            refresh_lease_until=row.refresh_lease_until,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def create(
        self,
        tenant_id: str,
        *,
        partner: str,
        flow: ConnectionFlow,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
        refresh_token: str | None = None,
    ) -> Connection:
        """A connection without an access token yet: it is due for its first at once."""
        now = time.time()
        connection_id = new_id("connection")
        async with self.db.write() as conn:
            await conn.execute(
                connections.insert().values(
                    id=connection_id,
                    tenant_id=tenant_id,
                    partner=partner,
                    flow=flow.value,
                    token_url=token_url,
                    client_id=client_id,
                    client_secret=self.box.encrypt(client_secret),
                    scopes=list(scopes),
                    refresh_token=(
                        None if refresh_token is None else self.box.encrypt(refresh_token)
                    ),
                    status=ConnectionStatus.EXPIRING.value,
                    refresh_ok_count=0,
                    refresh_failed_count=0,
                    consecutive_failures=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        created = await self.get_any(connection_id)
        assert created is not None
        return created

    async def get(self, tenant_id: str, connection_id: str) -> Connection | None:
        return await self._get(
            connections.c.id == connection_id, connections.c.tenant_id == tenant_id
        )

    async def get_any(self, connection_id: str) -> Connection | None:
        """By id alone: for the token manager, whose callers hold the id of their connection."""
        return await self._get(connections.c.id == connection_id)

    async def _get(self, *where: sa.ColumnElement[bool]) -> Connection | None:
        query = connections.select().where(*where, connections.c.deleted_at.is_(None))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else self._connection(row)

    async def for_partner(self, tenant_id: str, partner: str) -> list[str]:
        """The ids of the tenant's live connections to ``partner``."""
        query = sa.select(connections.c.id).where(
            connections.c.tenant_id == tenant_id,
            connections.c.partner == partner,
            connections.c.deleted_at.is_(None),
        )
        async with self.db.read() as conn:
            return [r.id for r in await conn.execute(query.order_by(connections.c.id))]

    async def list_connections(
        self, tenant_id: str, page: Page
    ) -> tuple[list[Connection], str | None]:
        query = connections.select().where(
            connections.c.tenant_id == tenant_id, connections.c.deleted_at.is_(None)
        )
        return await fetch_page(self.db, query, connections.c.id, page, self._connection)

    async def delete(self, tenant_id: str, connection_id: str) -> bool:
        # Soft, like the other configuration; the credentials go at once though.
        async with self.db.write() as conn:
            result = await conn.execute(
                connections.update()
                .where(
                    connections.c.id == connection_id,
                    connections.c.tenant_id == tenant_id,
                    connections.c.deleted_at.is_(None),
                )
                .values(
                    deleted_at=time.time(),
                    client_secret=self.box.encrypt(""),
                    access_token=None,
                    refresh_token=None,
                )
            )
        return bool(result.rowcount)

    # refreshing --------------------------------------------------------------------------------

    async def take_lease(self, connection_id: str, owner: str, now: float, until: float) -> bool:
        """Whether ``owner`` now holds the refresh of this connection (until ``until``)."""
        lease = connections.c.refresh_lease_until
        async with self.db.write() as conn:
            result = await conn.execute(
                connections.update()
                .where(
                    connections.c.id == connection_id,
                    connections.c.deleted_at.is_(None),
                    sa.or_(lease.is_(None), lease < now),
                )
                .values(refresh_lease_until=until, refresh_lease_owner=owner)
            )
        return bool(result.rowcount)

    async def release_lease(self, connection_id: str, owner: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                connections.update()
                .where(self._leased_by(connection_id, owner))
                .values(refresh_lease_until=None, refresh_lease_owner=None)
            )

    @staticmethod
    def _leased_by(connection_id: str, owner: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            connections.c.id == connection_id, connections.c.refresh_lease_owner == owner
        )

    async def store_token(
        self,
        connection_id: str,
        owner: str,
        *,
        access_token: str,
        refresh_token: str | None,
        issued_at: float,
        expires_at: float,
        refresh_due_at: float,
    ) -> bool:
        """Records a new token and releases the lease; False if the lease was lost meanwhile.

        ``refresh_token`` None keeps the stored one (a partner need not rotate it).
        """
        values: dict[str, Any] = {
            "access_token": self.box.encrypt(access_token),
            "token_issued_at": issued_at,
            "expires_at": expires_at,
            "refresh_due_at": refresh_due_at,
            "status": ConnectionStatus.HEALTHY.value,
            "refresh_ok_count": connections.c.refresh_ok_count + 1,
            "consecutive_failures": 0,
            "last_error": None,
            "last_refreshed_at": issued_at,
            "next_attempt_at": None,
            "refresh_lease_until": None,
            "refresh_lease_owner": None,
            "updated_at": time.time(),
        }
        if refresh_token is not None:
            values["refresh_token"] = self.box.encrypt(refresh_token)
        async with self.db.write() as conn:
            result = await conn.execute(
                connections.update().where(self._leased_by(connection_id, owner)).values(values)
            )
        return bool(result.rowcount)

    async def store_failure(
        self, connection_id: str, owner: str, *, error: str, next_attempt_at: float
    ) -> bool:
        """Records a failed token request and releases the lease; the token, if any, is kept."""
        async with self.db.write() as conn:
            result = await conn.execute(
                connections.update()
                .where(self._leased_by(connection_id, owner))
                .values(
                    status=ConnectionStatus.FAILED.value,
                    refresh_failed_count=connections.c.refresh_failed_count + 1,
                    consecutive_failures=connections.c.consecutive_failures + 1,
                    last_error=error[:_ERROR_CHARS],
                    next_attempt_at=next_attempt_at,
                    refresh_lease_until=None,
                    refresh_lease_owner=None,
                    updated_at=time.time(),
                )
            )
        return bool(result.rowcount)

    async def due(self, now: float, limit: int = 100) -> list[str]:
        """Connections whose token is due for refresh (or whose failed refresh is due again).

        An authorization-code connection without a refresh token cannot be refreshed, only
        authorized again: it is left alone.
        """
        c = connections.c
        query = (
            sa.select(c.id)
            .where(
                c.deleted_at.is_(None),
                sa.or_(
                    c.flow != ConnectionFlow.AUTHORIZATION_CODE.value, c.refresh_token.is_not(None)
                ),
                sa.or_(c.refresh_lease_until.is_(None), c.refresh_lease_until < now),
                sa.or_(
                    sa.and_(c.next_attempt_at.is_not(None), c.next_attempt_at <= now),
                    sa.and_(
                        c.next_attempt_at.is_(None),
                        sa.or_(c.refresh_due_at.is_(None), c.refresh_due_at <= now),
                    ),
                ),
            )
            .order_by(c.refresh_due_at)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [str(r.id) for r in await conn.execute(query)]

    # key rotation ------------------------------------------------------------------------------

    async def reencrypt(self, batch: int = 200) -> int:
        """Rewrites every ciphertext not under the first key; returns the rows rewritten (a
        token stored meanwhile by a refresh is never overwritten: storage/sealed_secrets.py)."""
        table, columns, reseal = SEALED["connections"]
        return await reseal_table(self.db, self.box, table, columns, reseal, batch)
