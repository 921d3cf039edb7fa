"""Tenant isolation by PostgreSQL row-level security: the policy, and the start-up check.

A tenant table is any table of the schema with a ``tenant_id`` column, and ``tenants`` itself
(its ``id``). The list is read from the live schema rather than written down: the migration that
protects the tables, the start-up check and the test all find the same tables, and a table added
later without its policy is caught, not forgotten. A migration that creates a tenant table calls
``protect`` for it.

Each table gets RLS enabled and FORCEd (the owner is bound too) and one policy: a row is visible
and writable when its tenant is the transaction's ``interlink.tenant_id``, or the transaction
runs in the system scope. ``storage/database.py`` sets both, transaction-locally, from
``storage/tenancy.py``; with neither set nothing is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

POLICY = "tenant_isolation"
TENANT_SETTING = "interlink.tenant_id"
SCOPE_SETTING = "interlink.scope"
SYSTEM = "system"
# The system scope for a whole session (a migration's or maintenance's DDL connection, whose
# statements commit one by one): what set_config(..., true) gives one transaction elsewhere.
SYSTEM_SESSION = f"SELECT set_config('{SCOPE_SETTING}', '{SYSTEM}', false)"

# The tenants table is keyed by its own id; every other tenant table by tenant_id.
_KEY_COLUMNS = {"tenants": "id"}
_TENANT_COLUMN = "tenant_id"

_TENANT_TABLES = sa.text(
    """
    SELECT c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
      AND (c.relname = 'tenants' OR EXISTS (
        SELECT FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = :column AND a.attnum > 0 AND NOT a.attisdropped))
    ORDER BY c.relname
    """
)


def key_column(table: str) -> str:
    return _KEY_COLUMNS.get(table, _TENANT_COLUMN)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def policy_condition(table: str) -> str:
    return (
        f"{_quoted(key_column(table))} = current_setting('{TENANT_SETTING}', true)"
        f" OR current_setting('{SCOPE_SETTING}', true) = '{SYSTEM}'"
    )


def protect_statements(table: str) -> list[str]:
    t = _quoted(table)
    condition = policy_condition(table)
    # Idempotent, so a table protected by its own migration may meet this again in another.
    return [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {t}",
        f"CREATE POLICY {POLICY} ON {t} USING ({condition}) WITH CHECK ({condition})",
    ]


def unprotect_statements(table: str) -> list[str]:
    t = _quoted(table)
    return [
        f"DROP POLICY IF EXISTS {POLICY} ON {t}",
        f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
    ]


def protect(table: str) -> None:
    """For a migration: put a tenant table under the isolation policy (no-op on SQLite)."""
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in protect_statements(table):
        op.execute(statement)


def unprotect(table: str) -> None:
    """For a migration's downgrade: the reverse of ``protect``."""
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in unprotect_statements(table):
        op.execute(statement)


def tenant_tables_sync(conn: sa.Connection) -> list[str]:
    """The tenant tables of the connection's schema, for a migration (a sync connection)."""
    return [r.name for r in conn.execute(_TENANT_TABLES, {"column": _TENANT_COLUMN})]


async def tenant_tables(conn: AsyncConnection) -> list[str]:
    return [r.name for r in await conn.execute(_TENANT_TABLES, {"column": _TENANT_COLUMN})]


class UnsafeDatabase(RuntimeError):
    """The database would not keep tenants apart for this connection; Interlink refuses to run."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "the database does not enforce tenant isolation for this connection:\n  - "
            + "\n  - ".join(self.problems)
        )


@dataclass(frozen=True)
class _Table:
    name: str
    owned: bool
    enabled: bool
    forced: bool
    policy: bool
    others: tuple[str, ...]  # permissive policies besides ours: each one widens what is seen


_ROLE = sa.text(
    "SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)
_TABLES = sa.text(
    """
    SELECT c.relname AS name,
           pg_has_role(current_user, c.relowner, 'MEMBER') AS owned,
           c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
           -- Ours: for every command and role, reading the tenant setting, checking writes alike.
           EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = :policy
                   AND p.polcmd = '*' AND p.polpermissive AND p.polroles = '{0}'
                   AND pg_get_expr(p.polqual, p.polrelid) LIKE :reads
                   AND pg_get_expr(p.polwithcheck, p.polrelid)
                       = pg_get_expr(p.polqual, p.polrelid)) AS policy,
           ARRAY(SELECT p.polname FROM pg_policy p WHERE p.polrelid = c.oid
                 AND p.polpermissive AND p.polname <> :policy ORDER BY 1) AS others
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relname = ANY(:tables)
    ORDER BY c.relname
    """
)


async def problems(conn: AsyncConnection) -> list[str]:
    """What makes this connection unsafe for tenant work; empty when the database enforces it."""
    found: list[str] = []
    role = (await conn.execute(_ROLE)).one()
    fix_role = (
        "connect the application as a role that is no superuser, has no BYPASSRLS and owns no "
        "table (scripts/postgres.sh makes interlink_app), and run the migrations as the owner "
        "(INTERLINK_MIGRATION_DATABASE_URL)"
    )
    if role.rolsuper:
        found.append(
            f"role {role.name} is a superuser, which row-level security never binds; " + fix_role
        )
    if role.rolbypassrls:
        found.append(f"role {role.name} has BYPASSRLS; " + fix_role)
    names = await tenant_tables(conn)
    if not names:
        found.append("the schema has no tenant tables: the database is not migrated")
    reads = f"%current_setting('{TENANT_SETTING}'%"
    parameters = {"policy": POLICY, "tables": names, "reads": reads}
    rows = (await conn.execute(_TABLES, parameters)).all()
    tables = [_Table(r.name, r.owned, r.enabled, r.forced, r.policy, tuple(r.others)) for r in rows]
    owned = [t.name for t in tables if t.owned]
    if owned:
        found.append(
            f"role {role.name} owns (or is a member of the owner of) {', '.join(owned)}, and an "
            "owner can switch row-level security off; " + fix_role
        )
    for t in tables:
        missing = [
            what
            for what, ok in (
                ("row-level security enabled", t.enabled),
                ("row-level security forced", t.forced),
                (f"the {POLICY} policy", t.policy),
            )
            if not ok
        ]
        if missing:
            found.append(
                f"table {t.name} lacks {' and '.join(missing)}; run the migrations (interlink "
                "migrates at start-up), and give a new tenant table its policy with "
                "interlink.storage.rls.protect in its migration"
            )
        if t.others:
            found.append(
                f"table {t.name} has other permissive policies ({', '.join(t.others)}) that "
                "widen what a tenant sees; drop them"
            )
    return found


async def verify(conn: AsyncConnection) -> None:
    """Refuses (``UnsafeDatabase``) a connection on which one tenant could see another's rows."""
    found = await problems(conn)
    if found:
        raise UnsafeDatabase(found)
