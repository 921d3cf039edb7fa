"""The relay: ships committed outbox rows to Interlink's batch publish API, in id order per key,
and marks them sent.

On PostgreSQL several relays may run at once. A relay claims rows in one transaction that it
holds while it ships them: ``FOR UPDATE SKIP LOCKED`` gives each row to one relay, and a
transaction-scoped advisory lock per key gives each *key* to one relay at a time, so no relay
can ship a key's row n+1 while another holds row n (a row lock alone would let it skip row n
and take n+1). A relay that dies mid-batch loses its locks with its connection; the next one
ships the same rows again under the same idempotency keys, and Interlink answers those it
already stored as duplicates: each event is stored once, in order.

On SQLite one relay at a time is the supported setup: it reads, ships, then marks sent in a
short write transaction (holding SQLite's single write lock across an HTTP call would stall the
application's writes).

Wake-ups: ``LISTEN interlink_outbox`` on PostgreSQL (``publish`` notifies on commit), with a
slow poll as a safety net; a poll every ``poll_seconds`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from interlink_client.client import AsyncInterlink
from interlink_client.errors import ApiError, TransportError
from interlink_client.models import EventToPublish
from interlink_client.outbox.table import CHANNEL, outbox

log = logging.getLogger("interlink_client.outbox")

MAX_BATCH = 1000  # the batch publish API's limit
# The first of the advisory lock's two keys: keeps the relay's per-key locks apart from the
# application's own advisory locks (which use other first keys, or the one-key form).
LOCK_SPACE = 0x4F42
# Refused for good: a malformed event (400), one too large (413), a catalog schema's 422.
PERMANENT = (400, 413, 422)
LISTEN_SAFETY_POLL = 5.0
MAX_BACKOFF = 10.0
# How far past a batch a relay looks for keys no other relay holds.
CANDIDATES = 4
MAX_LOCK_CHUNK = 64  # keys try-locked in one statement

_TRY_LOCKS = sa.text(
    "SELECT k, pg_try_advisory_xact_lock(:space, hashtext(k))"
    " FROM unnest(CAST(:keys AS text[])) AS k"
)

_COLUMNS = (
    outbox.c.id,
    outbox.c.event_type,
    outbox.c.data,
    outbox.c.event_key,
    outbox.c.idempotency_key,
    outbox.c.occurred_at,
)
_UNSENT = sa.and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))


def async_url(url: str) -> str:
    """The async driver's URL for a plain one: ``postgresql://`` → asyncpg,
    ``sqlite:///`` → aiosqlite; an explicit driver is kept."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    driver = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}.get(backend)
    if driver is None:
        raise ValueError(f"the outbox relay supports PostgreSQL and SQLite, not {backend!r}")
    if "+" in parsed.drivername:
        return url
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


@dataclass
class Shipped:
    sent: list[int]
    failed: dict[int, str]  # row id: why Interlink refused it for good
    duplicates: int


@dataclass
class Totals:
    rows: int = 0
    duplicates: int = 0
    failed: int = 0
    batches: int = 0


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        client: AsyncInterlink,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        idempotency_prefix: str = "outbox-",
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
        self.engine = engine
        self.client = client
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.prefix = idempotency_prefix
        self.totals = Totals()
        self.postgres = engine.dialect.name == "postgresql"
        self._wake = asyncio.Event()
        # The last claim passed over keys other relays held: look again soon, not at the
        # next notification (the rows behind those keys are waiting).
        self.contended = False
        self._listening: Any = None  # asyncpg's connection that LISTENs

    # one batch ---------------------------------------------------------------------------------

    async def claim(self, conn: AsyncConnection) -> Sequence[Any]:  # rows of _COLUMNS
        """The next batch in id order. On PostgreSQL, in ``conn``'s transaction: first the keys
        of the oldest unsent rows are try-locked (never waiting; another relay's keys are passed
        over), then the rows of the keys it got, and keyless rows, are locked ``SKIP LOCKED``.
        The key locks are taken in statements of their own, for chosen keys: a lock call in the
        rows' WHERE would run for every row the plan filters (all of them, under a sort),
        locking every key and starving the other relays."""
        query = sa.select(*_COLUMNS).where(_UNSENT).order_by(outbox.c.id).limit(self.batch_size)
        if not self.postgres:
            return (await conn.execute(query)).all()
        window = sa.select(outbox.c.event_key).where(_UNSENT).order_by(outbox.c.id)
        seen = (await conn.execute(window.limit(self.batch_size * CANDIDATES))).scalars().all()
        locked = await self._lock_keys(conn, seen)
        mine = sa.or_(outbox.c.event_key.is_(None), outbox.c.event_key.in_(locked))
        return (await conn.execute(query.where(mine).with_for_update(skip_locked=True))).all()

    async def _lock_keys(self, conn: AsyncConnection, seen: Sequence[str | None]) -> list[str]:
        """Try-locks the keys of ``seen`` (the oldest unsent rows' keys) oldest first, in chunks
        of 1, 2, 4, … keys, until the keys it got cover a batch. A key locked but not shipped
        waits for this relay's commit, so it locks about as many keys as it ships."""
        rows_of = Counter(seen)
        keys = [k for k in dict.fromkeys(seen) if k is not None]
        covered, locked, passed_over = 0, [], False
        start, size = 0, 1
        while start < len(keys) and covered < self.batch_size:
            chunk = keys[start : start + size]
            tried = await conn.execute(_TRY_LOCKS, {"space": LOCK_SPACE, "keys": chunk})
            got = [k for k, ok in tried if ok]
            passed_over |= len(got) < len(chunk)
            locked += got
            covered += sum(rows_of[k] for k in got)
            start, size = start + size, min(size * 2, MAX_LOCK_CHUNK)
        self.contended = passed_over
        return locked

    def _event(self, row: sa.Row[Any]) -> EventToPublish:
        return EventToPublish(
            type=row.event_type,
            data=msgspec.json.decode(row.data),
            key=row.event_key,
            idempotency_key=row.idempotency_key or f"{self.prefix}{row.id}",
            occurred_at=row.occurred_at,
        )

    async def _ship(self, rows: Sequence[sa.Row[Any]]) -> Shipped:
        """Publishes ``rows`` in order. A batch refused for good is split (halves, in order) to
        find the rows at fault, which are set aside; anything else refused is raised."""
        try:
            answer = await self.client.publish_batch([self._event(r) for r in rows])
        except ApiError as exc:
            if exc.status not in PERMANENT:
                raise
            if len(rows) == 1:
                log.error("outbox row %s refused by Interlink: %s", rows[0].id, exc)
                return Shipped([], {rows[0].id: str(exc)[:2000]}, 0)
            half = len(rows) // 2
            first, second = await self._ship(rows[:half]), await self._ship(rows[half:])
            return Shipped(
                first.sent + second.sent,
                first.failed | second.failed,
                first.duplicates + second.duplicates,
            )
        return Shipped([r.id for r in rows], {}, sum(p.duplicate for p in answer.data))

    async def _mark(self, conn: AsyncConnection, shipped: Shipped) -> None:
        now = time.time()
        if shipped.sent:
            sent = outbox.update().where(outbox.c.id.in_(shipped.sent)).values(sent_at=now)
            await conn.execute(sent)
        for row_id, error in shipped.failed.items():
            failed = outbox.update().where(outbox.c.id == row_id)
            await conn.execute(failed.values(failed_at=now, error=error))

    async def ship_once(self) -> int:
        """Claims, ships and marks one batch: how many rows it settled (0: nothing to do)."""
        if self.postgres:
            async with self.engine.begin() as conn:
                rows = await self.claim(conn)
                if not rows:
                    return 0
                shipped = await self._ship(rows)
                await self._mark(conn, shipped)
        else:
            async with self.engine.connect() as conn:
                rows = await self.claim(conn)
            if not rows:
                return 0
            shipped = await self._ship(rows)
            async with self.engine.begin() as conn:
                await self._mark(conn, shipped)
        self._count(shipped)
        return len(rows)

    def _count(self, shipped: Shipped) -> None:
        t = self.totals
        t.rows += len(shipped.sent)
        t.duplicates += shipped.duplicates
        t.failed += len(shipped.failed)
        t.batches += 1
        log.info(
            "outbox shipped %d rows (%d already in Interlink, %d refused); totals %s",
            len(shipped.sent),
            shipped.duplicates,
            len(shipped.failed),
            json.dumps(dataclasses.asdict(t)),
        )

    async def drain(self) -> int:
        """Ships until nothing is left to ship: how many rows."""
        total = 0
        while n := await self.ship_once():
            total += n
        return total

    # the loop ----------------------------------------------------------------------------------

    async def _listen(self) -> AsyncConnection | None:
        if not self.postgres:
            return None
        conn = await self.engine.connect()
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection  # asyncpg's own connection: SQLAlchemy has no LISTEN
        assert driver is not None
        await driver.add_listener(CHANNEL, lambda *_: self._wake.set())
        self._listening = driver
        return conn

    async def run(self, stop: asyncio.Event) -> None:
        """Ships until ``stop`` is set (the batch in hand is finished first). Interlink or the
        database being unavailable is waited out with a growing backoff."""
        listener: AsyncConnection | None = None
        backoff = 0.5
        idle_wait = LISTEN_SAFETY_POLL if self.postgres else self.poll_seconds
        log.info("outbox relay running (%s)", self.engine.dialect.name)
        try:
            while not stop.is_set():
                if listener is not None and self._listening.is_closed():
                    # Its connection was lost (a database restart): listen again.
                    with contextlib.suppress(Exception):
                        await listener.invalidate()
                    listener = None
                if self.postgres and listener is None:
                    with contextlib.suppress(sa.exc.DBAPIError, OSError):
                        listener = await self._listen()
                self._wake.clear()  # a notification from here on wakes the next wait
                try:
                    settled = await self.ship_once()
                except (ApiError, TransportError, sa.exc.DBAPIError, OSError) as exc:
                    log.warning("outbox relay: %s; retrying in %.1f s", exc, backoff)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = 0.5
                if not settled:
                    quiet = listener is not None and not self.contended
                    wait = idle_wait if quiet else self.poll_seconds
                    await _wait_any(stop, self._wake, wait)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def engine_for(database_url: str) -> AsyncEngine:
    url = async_url(database_url)
    if url.startswith("sqlite"):
        # Waits for the application's write lock instead of failing at once.
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
