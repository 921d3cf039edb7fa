"""Fixtures for every test directory: a PostgreSQL server, and fresh databases on it; and the
canary sweep (tests/canary.py), which checks after every test that no secret leaked.

``INTERLINK_TEST_POSTGRES_URL`` names the server and a role that may create databases;
``bash scripts/postgres.sh install start setup`` starts one and prints the URL
(``postgresql://interlink_owner@127.0.0.1:5433/postgres``). When it is unset or the server does
not answer, the tests that need PostgreSQL are skipped — but with ``CI=true`` they fail: in CI a
missing service is a broken build, not a reason to test less.

The helpers run on a private event loop in a worker thread, so sync fixtures can use them from
inside the async fixtures and tests that request them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

# The canary sweep (tests/canary.py) runs around every test of the suite.
pytest_plugins = ("tests.canary",)

POSTGRES_URL_ENV = "INTERLINK_TEST_POSTGRES_URL"
# Made by scripts/postgres.sh setup: the schema owned by interlink_owner, and default privileges
# that give interlink_app what the owner creates. Without it, a database is a plain copy of
# template1.
TEMPLATE = "interlink_template"
OWNER = "interlink_owner"
# The application's role: what Interlink connects as on PostgreSQL, bound by row-level security.
APP_ROLE = "interlink_app"
CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _run(coroutine: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine(*args))).result()


def _dsn(url: str) -> str:
    """asyncpg's spelling of a SQLAlchemy-style URL (``postgresql+asyncpg://`` → ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url(server_url: str, name: str) -> str:
    """The server's URL, pointed at another database."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def as_role(url: str, role: str) -> str:
    """The same database, connected to as another role (trust authentication, no password)."""
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def app_url(url: str) -> str:
    """A test database's URL for the application role (migrate with the owner's URL)."""
    return as_role(url, APP_ROLE)


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(url), timeout=CONNECT_TIMEOUT)


async def _ping(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _create_database(server_url: str, name: str) -> None:
    conn = await connect(server_url)
    try:
        template = await conn.fetchval(
            "SELECT datname FROM pg_database WHERE datname = $1 AND datistemplate", TEMPLATE
        )
        owner = await conn.fetchval("SELECT rolname FROM pg_roles WHERE rolname = $1", OWNER)
        sql = f'CREATE DATABASE "{name}"'
        if owner:
            sql += f' OWNER "{owner}"'
        if template:
            sql += f' TEMPLATE "{template}"'
        for attempt in range(20):
            try:
                await conn.execute(sql)
                return
            except asyncpg.ObjectInUseError:  # someone is connected to the template right now
                if attempt == 19:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    conn = await connect(server_url)
    try:
        # WITH (FORCE) terminates the sessions still connected to it first.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def create_database(server_url: str) -> str:
    """A fresh, uniquely named database (owned by interlink_owner when that role exists)."""
    name = f"interlink_test_{uuid.uuid4().hex[:20]}"
    _run(_create_database, server_url, name)
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    assert name and name.startswith("interlink_test_"), f"refusing to drop {name!r}"
    _run(_drop_database, server_url, name)


def service_unavailable(message: str) -> None:
    """A test's real service is missing: a clean skip on a laptop, a failure in CI."""
    if in_ci():
        pytest.fail(message + " CI=true: a missing service fails the build.", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the test server (from INTERLINK_TEST_POSTGRES_URL), checked once per session."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()

    def unavailable(why: str) -> None:
        service_unavailable(
            f"PostgreSQL not available: {why}. Start one with "
            f"`bash scripts/postgres.sh install start setup` and set {POSTGRES_URL_ENV}."
        )

    if not url:
        unavailable(f"{POSTGRES_URL_ENV} is not set")
    try:
        _run(_ping, url)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        unavailable(f"cannot connect to {shown} ({type(exc).__name__}: {exc})")
    return url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh database for one test: its URL (``postgresql://…``), dropped afterwards."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The test Kafka broker's address (tests/kafka_support.py): skipped without one, failed
    under CI."""
    from tests import kafka_support  # confluent_kafka is imported only by the tests that need it

    return kafka_support.kafka_bootstrap()
