"""The database handle: an async SQLAlchemy engine plus the rules for transactions on it.

On SQLite every write transaction goes through one in-process lock: SQLite has a single writer,
and queuing in the event loop is cheaper and fairer than busy-waiting on the file lock. Each
commit is durable (WAL with ``synchronous=FULL`` fsyncs the log on commit).

On PostgreSQL every transaction first hands the database its tenancy scope (storage/tenancy.py)
as transaction-local settings, which the row-level security policies read (storage/rls.py):
local, so a pooled connection carries nothing into its next transaction; and set in every
transaction, so a session-level setting left on a connection is overridden, never inherited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from interlink.storage import rls, tenancy
from interlink.storage.private_files import private_sqlite
from interlink.storage.sqlite.driver import PRAGMAS


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is locked; callers answer 503, not 500."""


def normalize_url(url: str) -> str:
    """Accepts plain ``sqlite:///`` and ``postgresql://`` URLs and picks the async driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> Path | None:
    url = normalize_url(url)
    if not url.startswith("sqlite+aiosqlite:///"):
        return None
    path = url.removeprefix("sqlite+aiosqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


# One round trip for both settings; ``true``: SET LOCAL, gone at commit or rollback.
_SET_SCOPE = sa.text(
    f"SELECT set_config('{rls.TENANT_SETTING}', :tenant, true),"
    f" set_config('{rls.SCOPE_SETTING}', :scope, true)"
)


async def _enter_scope(conn: AsyncConnection) -> None:
    scope = tenancy.current()
    if scope is None:  # nothing visible: the policies match neither setting
        values = {"tenant": "", "scope": ""}
    elif scope.tenant_id is None:
        values = {"tenant": "", "scope": rls.SYSTEM}
    else:
        values = {"tenant": scope.tenant_id, "scope": "tenant"}
    await conn.execute(_SET_SCOPE, values)


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int | None = None) -> None:
        """``pool_size``: at most that many connections (PostgreSQL); None: SQLAlchemy's
        default of 5 kept and 10 more under load."""
        self.url = normalize_url(url)
        path = sqlite_path(self.url)
        if path is not None:
            private_sqlite(path)
        options: dict[str, Any] = {}
        if pool_size is not None and path is None:
            options = {"pool_size": pool_size, "max_overflow": 0}
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **options)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that writes; committed on exit, rolled back on error."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                await _enter_scope(conn)
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await _enter_scope(conn)  # begins the transaction the reads then run in
            yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
