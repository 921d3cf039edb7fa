"""One ``sqlite3`` connection on one thread: a whole transaction per hop to it.

The hot path writes in batches; what costs there is not SQLite (a commit with its fsync takes
well under a millisecond) but the way to it. Running each transaction as one function on the
connection's own thread pays one hop per batch instead of one per statement, and sqlite3's
statement cache makes each statement a prepared one. sqlite3 releases the GIL while SQLite works.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Each connection's page cache, in KiB (SQLite's negative cache_size).
CACHE_KIB = 65536
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # the WAL is fsynced at every commit: durable before the 202
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA cache_size=-{CACHE_KIB}",
)


class SqliteDriver:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-hot-path")
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        for pragma in PRAGMAS:
            conn.execute(pragma)
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn`` in one IMMEDIATE transaction (the write lock from its start), committed."""

        def transaction() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(transaction)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the SQLite driver is not started")
        return self._conn
