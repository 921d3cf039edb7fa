"""Tenant isolation enforced by PostgreSQL row-level security, not only by the queries' filters.

Two tenants with sources, endpoints, subscriptions, events, deliveries and attempts, served by
the real Interlink as the application role over a pool of 5 connections; 10,000 requests
alternate between the tenants, 50 at a time: API listings, and a probe that reads every tenant
table with no tenant filter at all. None sees a row of the other tenant. The negative controls
prove the loop can fail: the tenant set with a plain session-level SET on pooled connections,
and RLS not forced for the tables' owner, both leak. And with no scope, nothing is visible.

Each test gets a fresh database (tests/conftest.py); skipped without INTERLINK_TEST_POSTGRES_URL,
a failure in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from tests.conftest import app_url, connect
from tests.integration.conftest import ADMIN, TEST_KEY, eventually, signed

from interlink import config
from interlink.api.auth import TenancyMiddleware
from interlink.app import Interlink
from interlink.storage import migrate, rls
from interlink.storage.database import Database, normalize_url
from interlink.storage.tenancy import system_scope, tenant_scope

# What the schema had when row-level security came (migration 0010, after 0009); the live
# schema may only add to it, and every table it adds must be protected too
# (test_every_tenant_table_is_protected).
KNOWN_TENANT_TABLES = {
    "tenants",
    "api_keys",
    "sources",
    "endpoints",
    "endpoint_lanes",
    "subscriptions",
    "events",
    "deliveries",
    "attempts",
    "idempotency_keys",
    "jobs",
    "connections",
    "quarantine",
    "entity_states",
}
# The tables the world below puts rows of both tenants in.
POPULATED = KNOWN_TENANT_TABLES - {"connections", "quarantine", "entity_states"}
REQUESTS = 10_000
CONCURRENCY = 50
POOL = 5


def _probe_sql(tables: list[str]) -> sa.TextClause:
    """One statement over every tenant table, with no tenant filter: what the database lets by."""
    parts = [f"SELECT '{t}' AS tbl, {rls.key_column(t)} AS tenant FROM {t}" for t in tables]
    return sa.text(" UNION ALL ".join(parts))


async def _seen(conn: AsyncConnection, probe: sa.TextClause) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for row in await conn.execute(probe):
        seen.setdefault(row.tenant, set()).add(row.tbl)
    return seen


@dataclass
class Tenant:
    id: str
    key: str
    ids: dict[str, set[str]] = field(default_factory=dict)  # listing path -> ids made


@dataclass
class World:
    system: Interlink
    client: httpx.AsyncClient
    owner_url: str
    tenants: list[Tenant]
    tables: list[str]

    @property
    def probe(self) -> sa.TextClause:
        return _probe_sql(self.tables)


async def _populate(client: httpx.AsyncClient, name: str) -> Tenant:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    made = (await client.post("/api/v1/tenants", json={"name": name}, headers=admin)).json()
    tenant = Tenant(made["tenant"]["id"], made["api_key"])
    auth = {"Authorization": f"Bearer {tenant.key}"}

    async def post(path: str, body: Any) -> dict[str, Any]:
        r = await client.post(path, json=body, headers=auth)
        assert r.status_code == 201, r.text
        return dict(r.json())

    tenant.ids = {"/api/v1/sources": set(), "/api/v1/endpoints": set(), "/api/v1/events": set()}
    made_sources = []
    for i in range(2):
        source = await post("/api/v1/sources", {"name": f"{name}-pms-{i}"})
        tenant.ids["/api/v1/sources"].add(source["source"]["id"])
        made_sources.append((source["source"]["id"], source["secrets"][0]))
        # Nothing listens on port 9: each delivery fails once, leaving an attempt behind.
        ep = await post(
            "/api/v1/endpoints", {"url": "http://127.0.0.1:9/x", "retry_schedule": [0, 3600]}
        )
        tenant.ids["/api/v1/endpoints"].add(ep["endpoint"]["id"])
        await post(
            "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
        )
    for source_id, secret in made_sources:
        for n in range(3):
            body, headers = signed(secret, f"{source_id}-{n}", {"type": "t", "data": {}})
            r = await client.post(f"/in/{source_id}", content=body, headers=headers)
            assert r.status_code == 202, r.text
            tenant.ids["/api/v1/events"].add(r.json()["id"])
    r = await client.post("/api/v1/jobs/redrive", json={}, headers=auth)  # nothing dead: a no-op
    assert r.status_code == 202, r.text
    tenant.ids["/api/v1/jobs"] = {r.json()["id"]}
    return tenant


@pytest.fixture
async def world(
    postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    monkeypatch.chdir(tmp_path)
    settings = config.load(
        path=str(tmp_path / "none.toml"),
        env={},
        database_url=app_url(postgres_database),
        migration_database_url=postgres_database,
        database_pool_size=POOL,
        admin_key=ADMIN,
        secrets_key=[TEST_KEY],
        outbound_allow_networks=["127.0.0.0/8"],
        poll_interval_seconds=0.2,
        volume_monitor=False,
    )
    system = Interlink(settings)
    await system.start()
    transport = httpx.ASGITransport(app=system)
    async with httpx.AsyncClient(transport=transport, base_url="http://interlink") as client:
        tenants = [await _populate(client, "acme"), await _populate(client, "globex")]
        with system_scope("test: wait for the pipeline"):

            async def attempted() -> bool:
                # Every delivery routed (2 tenants x 6 events x 2 endpoints), and attempts made
                # for both tenants (the failing endpoints' breakers may hold back the rest).
                async with system.db.read() as conn:
                    routed = (
                        await conn.execute(sa.text("SELECT count(*) FROM deliveries"))
                    ).scalar()
                    tried = await conn.execute(
                        sa.text("SELECT count(DISTINCT tenant_id) FROM attempts")
                    )
                    return routed == 24 and tried.scalar() == 2

            await eventually(attempted, timeout=20)
            async with system.db.read() as conn:
                tables = await rls.tenant_tables(conn)
        for t in tenants:
            auth = {"Authorization": f"Bearer {t.key}"}
            listing = (await client.get("/api/v1/deliveries", headers=auth)).json()
            t.ids["/api/v1/deliveries"] = {d["id"] for d in listing["data"]}
            assert len(t.ids["/api/v1/deliveries"]) == 12
        yield World(system, client, postgres_database, tenants, tables)
    await system.stop()


Request = Callable[[Tenant, int], Awaitable[dict[str, set[str]]]]


async def _alternate(world: World, request: Request, n: int) -> int:
    """n requests alternating between the two tenants, CONCURRENCY at a time; the number of
    requests that saw a row of the other tenant (and the whole loop sees rows of its own)."""
    counter = itertools.count()
    leaked = 0
    own_seen: set[str] = set()
    a, b = world.tenants

    async def worker() -> None:
        nonlocal leaked
        while (i := next(counter)) < n:
            tenant = (a, b)[i % 2]
            other = (b, a)[i % 2]
            seen = await request(tenant, i)
            own_seen.update(seen.get(tenant.id, set()))
            if other.id in seen:
                leaked += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert own_seen, "the loop saw no rows at all: it would pass for the wrong reason"
    return leaked


def _probe_app(world: World) -> Callable[..., Awaitable[None]]:
    """Reads every tenant table unfiltered on the app's own pool, and answers whose rows it saw."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with world.system.db.read() as conn:
            seen = await _seen(conn, world.probe)
        body = json.dumps({t: sorted(tables) for t, tables in seen.items()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@contextlib.asynccontextmanager
async def _probe_client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The probe behind the real authentication middleware: it runs in the key's scope."""
    guarded = TenancyMiddleware(_probe_app(world), ADMIN, world.system.management)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        yield client


def _api_and_probe(world: World, probe: httpx.AsyncClient) -> Request:
    """Half the requests: an API listing through the real app; half: the unfiltered probe."""
    paths = sorted(world.tenants[0].ids)

    async def request(tenant: Tenant, i: int) -> dict[str, set[str]]:
        auth = {"Authorization": f"Bearer {tenant.key}"}
        if i % 4 < 2:
            path = paths[(i // 4) % len(paths)]
            r = await world.client.get(path, headers=auth, params={"limit": 100})
            assert r.status_code == 200, r.text
            got = {item["id"] for item in r.json()["data"]}
            assert got, path
            return {t.id: {path} for t in world.tenants if got & t.ids[path]}
        r = await probe.get("/", headers=auth)
        assert r.status_code == 200, r.text
        return {t: set(tables) for t, tables in r.json().items()}

    return request


async def test_ten_thousand_requests_never_see_the_other_tenant(world: World) -> None:
    async with _probe_client(world) as probe:
        assert await _alternate(world, _api_and_probe(world, probe), REQUESTS) == 0
        # The unfiltered reads had rows to leak: each key sees its own in every tenant table.
        for t in world.tenants:
            r = await probe.get("/", headers={"Authorization": f"Bearer {t.key}"})
            assert set(r.json()) == {t.id}
            assert set(r.json()[t.id]) >= POPULATED
        # The admin key runs in the system scope: everyone's.
        r = await probe.get("/", headers={"Authorization": f"Bearer {ADMIN}"})
        assert set(r.json()) == {t.id for t in world.tenants}
        r = await probe.get("/", headers={"Authorization": "Bearer not-a-key"})
        assert r.json() == {}


async def test_control_a_session_level_set_on_pooled_connections_leaks(world: World) -> None:
    """The classic mistake: the tenant set on a connection with a plain (session) SET, as a
    request's first step, and the query run on whichever connection the pool hands out next."""
    engine = create_async_engine(
        normalize_url(app_url(world.owner_url)), pool_size=POOL, max_overflow=0
    )
    probe = world.probe

    async def request(tenant: Tenant, _: int) -> dict[str, set[str]]:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f"SET interlink.tenant_id = '{tenant.id}'"))
            await conn.commit()
        async with engine.connect() as conn:
            return await _seen(conn, probe)

    try:
        leaked = await _alternate(world, request, 1_000)
    finally:
        await engine.dispose()
    assert leaked > 0

    # The same two steps through Database, whose every transaction sets its scope LOCAL: none.
    async def scoped(tenant: Tenant, _: int) -> dict[str, set[str]]:
        with tenant_scope(tenant.id):
            async with world.system.db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
            async with world.system.db.read() as conn:
                return await _seen(conn, probe)

    assert await _alternate(world, scoped, 1_000) == 0


async def test_control_rls_not_forced_lets_the_owner_see_every_tenant(world: World) -> None:
    owner = Database(world.owner_url, pool_size=POOL)
    probe = world.probe

    async def request(tenant: Tenant, _: int) -> dict[str, set[str]]:
        with tenant_scope(tenant.id):
            async with owner.read() as conn:
                return await _seen(conn, probe)

    try:
        # FORCEd, the policy binds the tables' owner too ...
        assert await _alternate(world, request, 200) == 0
        async with owner.write() as conn:
            for table in world.tables:
                await conn.execute(sa.text(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"))
        # ... not forced, the owner sees every tenant's rows, whatever the scope says.
        assert await _alternate(world, request, 200) == 200
    finally:
        await owner.close()


async def test_with_no_scope_nothing_is_visible_or_writable(world: World) -> None:
    probe = world.probe
    async with world.system.db.read() as conn:  # no scope entered
        assert (await conn.execute(probe)).all() == []
    # A bare connection of the application role, no settings at all: nothing either.
    conn = await connect(app_url(world.owner_url))
    try:
        assert await conn.fetch(probe.text) == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t', 'x', 0)")
    finally:
        await conn.close()
    # The system scope sees both tenants.
    with system_scope("test"):
        async with world.system.db.read() as c:
            assert set(await _seen(c, probe)) == {t.id for t in world.tenants}


async def test_a_tenant_cannot_write_into_or_change_another_tenant(world: World) -> None:
    a, b = world.tenants
    with tenant_scope(a.id):
        async with world.system.db.write() as conn:
            changed = await conn.execute(sa.text("UPDATE sources SET name = 'taken'"))
            assert changed.rowcount == 2  # its own two, not b's
            gone = await conn.execute(
                sa.text("DELETE FROM subscriptions WHERE tenant_id <> :a"), {"a": a.id}
            )
            assert gone.rowcount == 0
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            async with world.system.db.write() as conn:
                await conn.execute(sa.text("UPDATE sources SET tenant_id = :b"), {"b": b.id})
        with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
            async with world.system.db.write() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO tenants (id, name, created_at) VALUES (:b || 'x', 'x', 0)"
                    ),
                    {"b": b.id},
                )
    with tenant_scope(b.id):
        async with world.system.db.read() as conn:
            names = (await conn.execute(sa.text("SELECT name FROM sources"))).scalars().all()
    assert len(names) == 2 and "taken" not in names


async def test_every_tenant_table_is_protected(postgres_database: str) -> None:
    """Read from the catalog, independently of interlink.storage.rls: any table with a tenant_id
    column (and tenants) has RLS enabled and forced and the tenant_isolation policy. A table
    added later without its policy fails here."""
    await asyncio.to_thread(migrate.upgrade, postgres_database)
    conn = await connect(postgres_database)
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   ARRAY(SELECT policyname FROM pg_policies p
                         WHERE p.schemaname = 'public' AND p.tablename = c.relname) AS policies
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND (c.relname = 'tenants' OR
              c.relname IN (SELECT table_name FROM information_schema.columns
                            WHERE table_schema = 'public' AND column_name = 'tenant_id'))
            """
        )
        protected = {
            r["relname"]
            for r in rows
            if r["relrowsecurity"] and r["relforcerowsecurity"] and rls.POLICY in r["policies"]
        }
        assert {r["relname"] for r in rows} >= KNOWN_TENANT_TABLES
        assert protected == {r["relname"] for r in rows}
        # The rest have no tenant: the router's cursor and Alembic's version.
        others = await conn.fetch(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relrowsecurity"
        )
        assert {r["relname"] for r in others} == protected
    finally:
        await conn.close()
    # The list the migration and the start-up check use is the same one.
    db = Database(postgres_database)
    try:
        async with db.read() as c:
            assert set(await rls.tenant_tables(c)) == protected
    finally:
        await db.close()
