"""Interlink refuses to start on a PostgreSQL database that would not keep tenants apart: a
superuser, a BYPASSRLS role, the tables' owner, a tenant table without forced RLS or without its
policy, or with a policy that widens it; and ``interlink up`` says why and exits non-zero.

Each test gets a fresh database (tests/conftest.py); skipped without INTERLINK_TEST_POSTGRES_URL,
a failure in CI. The superuser and BYPASSRLS cases need the cluster's ``postgres`` role over trust
authentication on the test server, as scripts/postgres.sh sets it up; they skip without it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from tests.conftest import app_url, as_role, connect
from tests.integration.conftest import ADMIN, TEST_KEY

from interlink import config
from interlink.app import Interlink
from interlink.storage import migrate
from interlink.storage.rls import UnsafeDatabase


def _settings(tmp_path: Path, url: str, migration_url: str) -> config.Settings:
    return config.load(
        path=str(tmp_path / "none.toml"),
        env={},
        database_url=url,
        migration_database_url=migration_url,
        admin_key=ADMIN,
        volume_monitor=False,
        secrets_key=[TEST_KEY],
    )


async def _start(tmp_path: Path, url: str, migration_url: str) -> None:
    system = Interlink(_settings(tmp_path, url, migration_url))
    try:
        await system.start()
    finally:
        await system.stop()


@pytest.fixture
async def migrated(postgres_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    await asyncio.to_thread(migrate.upgrade, postgres_database)
    return postgres_database


async def _as_owner(url: str, *statements: str) -> None:
    conn = await connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def superuser(migrated: str) -> str:
    url = as_role(migrated, "postgres")
    try:
        await _as_owner(url, "SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no superuser on the test server over trust authentication ({exc})")
    return url


async def test_the_application_role_starts(migrated: str, tmp_path: Path) -> None:
    await _start(tmp_path, app_url(migrated), migrated)


async def test_refuses_the_tables_owner(migrated: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeDatabase, match="role interlink_owner owns") as refused:
        await _start(tmp_path, migrated, migrated)
    assert "tenants" in str(refused.value) and "interlink_app" in str(refused.value)


async def test_refuses_a_superuser(superuser: str, tmp_path: Path, migrated: str) -> None:
    with pytest.raises(UnsafeDatabase, match="role postgres is a superuser"):
        await _start(tmp_path, superuser, migrated)


@pytest.fixture
async def bypassing(superuser: str, migrated: str) -> AsyncIterator[str]:
    """A role with BYPASSRLS and the app's rights (roles are cluster-wide: dropped afterwards)."""
    role = f"interlink_test_bypass_{uuid.uuid4().hex[:12]}"
    await _as_owner(superuser, f"CREATE ROLE {role} LOGIN BYPASSRLS IN ROLE interlink_app")
    try:
        yield as_role(migrated, role)
    finally:
        await _as_owner(superuser, f"DROP ROLE {role}")


async def test_refuses_a_role_that_bypasses_rls(
    bypassing: str, tmp_path: Path, migrated: str
) -> None:
    with pytest.raises(UnsafeDatabase, match="has BYPASSRLS"):
        await _start(tmp_path, bypassing, migrated)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            ["ALTER TABLE events NO FORCE ROW LEVEL SECURITY"],
            "table events lacks row-level security forced",
        ),
        (
            ["ALTER TABLE sources DISABLE ROW LEVEL SECURITY"],
            "table sources lacks row-level security enabled",
        ),
        (
            ["DROP POLICY tenant_isolation ON deliveries"],
            "table deliveries lacks the tenant_isolation",
        ),
        (
            [
                "DROP POLICY tenant_isolation ON endpoints",
                "CREATE POLICY tenant_isolation ON endpoints USING (true)",
            ],
            "table endpoints lacks the tenant_isolation policy",
        ),
        # A table another change adds, with a tenant and no policy: caught by its column alone.
        (
            ["CREATE TABLE later_table (id text PRIMARY KEY, tenant_id text NOT NULL)"],
            "table later_table lacks row-level security enabled and row-level security forced",
        ),
        (
            ["CREATE POLICY everyone ON attempts USING (true)"],
            "table attempts has other permissive policies (everyone)",
        ),
    ],
)
async def test_refuses_a_tenant_table_rls_does_not_guard(
    migrated: str, tmp_path: Path, damage: list[str], expected: str
) -> None:
    await _as_owner(migrated, *damage)
    with pytest.raises(UnsafeDatabase) as refused:
        await _start(tmp_path, app_url(migrated), migrated)  # at head: nothing migrates back
    assert expected in str(refused.value)


async def test_interlink_up_says_why_and_exits_non_zero(migrated: str, tmp_path: Path) -> None:
    # A process of its own: `up` configures the process's logging, which a test must not.
    env = {
        **os.environ,
        "INTERLINK_DATABASE_URL": migrated,  # the owner: refused
        "INTERLINK_ADMIN_KEY": ADMIN,
        "INTERLINK_SECRETS_KEY": TEST_KEY,
        "INTERLINK_VOLUME_MONITOR": "false",
        "INTERLINK_CONFIG": str(tmp_path / "none.toml"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlink",
        "up",
        "--port",
        "0",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = stderr.decode()
    assert process.returncode == 1, output
    assert "Interlink refuses to run" in output
    assert "role interlink_owner owns" in output
    assert "INTERLINK_MIGRATION_DATABASE_URL" in output
