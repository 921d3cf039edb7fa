"""The Alembic migrations on PostgreSQL: up, down to nothing, and up again, with the types and the
partial index the storage code relies on; and the application role's rights on what they make.

Each test gets a fresh database (tests/conftest.py); skipped without INTERLINK_TEST_POSTGRES_URL,
a failure in CI.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from interlink.storage import migrate, partitions
from interlink.storage.tables import metadata

TABLES = {t.name for t in metadata.sorted_tables}
APP_ROLE = "interlink_app"


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _tables(url: str) -> set[str]:
    """The tables, not counting the partitions of events and attempts (storage/partitions.py)."""
    rows = await _fetch(
        url,
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relkind IN ('r', 'p') AND NOT relispartition",
    )
    return {r["relname"] for r in rows}


async def _partitions(url: str, table: str) -> set[str]:
    rows = await _fetch(
        url,
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = $1::regclass",
        table,
    )
    return {r["name"] for r in rows}


async def _head(url: str) -> str | None:
    rows = await _fetch(url, "SELECT version_num FROM alembic_version")
    return rows[0]["version_num"] if rows else None


async def test_upgrade_downgrade_upgrade(postgres_database: str) -> None:
    url = postgres_database
    await asyncio.to_thread(migrate.upgrade, url)
    assert await _tables(url) == TABLES | {"alembic_version"}
    head = await _head(url)
    assert head is not None
    for table in ("events", "attempts"):
        parts = await _partitions(url, table)
        assert {f"{table}_history", f"{table}_future"} <= parts
        assert len(parts) == 2 + partitions.AHEAD_DAYS  # and a partition a day ahead

    await asyncio.to_thread(migrate.downgrade, url, "base")
    assert await _tables(url) == {"alembic_version"}
    assert await _head(url) is None
    sequences = await _fetch(url, "SELECT sequencename FROM pg_sequences")
    assert sequences == []  # events.seq's BIGSERIAL went with its table

    await asyncio.to_thread(migrate.upgrade, url)
    assert await _tables(url) == TABLES | {"alembic_version"}
    assert await _head(url) == head


async def test_the_schema_has_the_types_the_code_relies_on(postgres_database: str) -> None:
    url = postgres_database
    await asyncio.to_thread(migrate.upgrade, url)
    rows = await _fetch(
        url,
        "SELECT table_name, column_name, data_type, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public'",
    )
    types = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    # Times are epoch seconds in full double precision: leases are compared for equality.
    for table, column in [
        ("events", "received_at"),
        ("deliveries", "next_attempt_at"),
        ("deliveries", "lease_until"),
        ("attempts", "started_at"),
        ("endpoints", "timeout_seconds"),
    ]:
        assert types[(table, column)] == "double precision", (table, column)
    assert types[("events", "data")] == types[("events", "raw")] == "bytea"
    assert types[("events", "headers")] == "json"
    assert types[("events", "seq")] == types[("deliveries", "event_seq")] == "bigint"
    seq_default = next(
        r["column_default"]
        for r in rows
        if (r["table_name"], r["column_name"]) == ("events", "seq")
    )
    assert seq_default.startswith("nextval(")

    (index,) = await _fetch(
        url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_due_push'"
    )
    assert "(next_attempt_at)" in index["indexdef"] and "WHERE" in index["indexdef"]
    for status in ("pending", "scheduled", "in_flight", "'push'"):
        assert status in index["indexdef"]
    (pull,) = await _fetch(
        url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_due_pull'"
    )
    assert "(endpoint_id, next_attempt_at)" in pull["indexdef"] and "'pull'" in pull["indexdef"]
    for gone in ("ix_deliveries_due", "ix_deliveries_due_active", "ix_deliveries_key_head_all"):
        assert not await _fetch(url, "SELECT 1 FROM pg_indexes WHERE indexname = $1", gone)


async def test_the_app_role_reads_and_writes_but_owns_nothing(postgres_database: str) -> None:
    url = postgres_database
    roles = await _fetch(
        url, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", APP_ROLE
    )
    if not roles:
        why = f"no role {APP_ROLE} on this server (bash scripts/postgres.sh setup makes it)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    assert not roles[0]["rolsuper"] and not roles[0]["rolbypassrls"]
    await asyncio.to_thread(migrate.upgrade, url)
    owners = await _fetch(
        url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    )
    assert APP_ROLE not in {r["tableowner"] for r in owners}

    app = make_url(url).set(username=APP_ROLE, password=None).render_as_string(False)
    conn = await asyncpg.connect(make_url(app).set(drivername="postgresql").render_as_string(False))
    try:
        # Row-level security shows and takes rows only in a tenancy scope (storage/tenancy.py);
        # a session-level setting serves this one connection.
        await conn.execute("SET interlink.tenant_id = 'tnt_1'")
        await conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('tnt_1', 'a', 1)")
        await conn.execute("UPDATE tenants SET name = 'b' WHERE id = 'tnt_1'")
        assert await conn.fetchval("SELECT name FROM tenants WHERE id = 'tnt_1'") == "b"
        # The sequence behind events.seq: USAGE through the owner's default privileges.
        seq = await conn.fetchval(
            "INSERT INTO events (id, tenant_id, source_id, idempotency_key, type, received_at,"
            " data, raw, headers) VALUES ('evt_1', 'tnt_1', 'src_1', 'k', 't', 1, '', '', '{}')"
            " RETURNING seq"
        )
        assert seq == 1
        await conn.execute("DELETE FROM tenants WHERE id = 'tnt_1'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE app_made (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TABLE events")
    finally:
        await conn.close()
