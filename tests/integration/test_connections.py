"""OAuth connections end to end: the token manager against the simulated partner's real token
endpoint over loopback, on a real database (a SQLite file, and PostgreSQL).

What is proven: one refresh for many concurrent callers, in one process and across processes;
a failed refresh marks the connection failed, counts it, backs off and recovers by itself;
tokens are refreshed before they expire; nothing secret is stored readable; key rotation.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import app_url
from tests.integration.conftest import eventually

from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.domain.retry import RetryPolicy
from interlink.domain.token_refresh import ConnectionFlow, ConnectionStatus, RefreshPolicy
from interlink.partners.oauth import TokenEndpoint
from interlink.partners.outbound import PartnerSession
from interlink.partners.simulator import PartnerSimulator
from interlink.partners.tokens import TokenManager, TokenUnavailable
from interlink.storage import migrate
from interlink.storage.connections import Connection, Connections
from interlink.storage.database import Database
from interlink.storage.management import Management
from interlink.storage.secrets_box import SecretBox, SecretUnreadable
from interlink.storage.tables import connections as connections_table
from interlink.storage.tenancy import system_scope

LOOPBACK = OutboundPolicy(allow_networks=("127.0.0.0/8",))
KEY = SecretBox.new_key()
FAST_RETRY = RefreshPolicy(retry=RetryPolicy(schedule=(0.3, 0.3), jitter=0.0))


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    # On PostgreSQL as in production: the owner migrates, the application role (which row-level
    # security binds) works, here in the system scope, as the token refresher does.
    migration_url = url = f"sqlite:///{tmp_path}/connections.db"
    if request.param == "postgres":
        migration_url = str(request.getfixturevalue("postgres_database"))
        url = app_url(migration_url)
    await asyncio.to_thread(migrate.upgrade, migration_url)
    with system_scope("connections suite"):
        yield url


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@dataclass
class Stack:
    db: Database
    connections: Connections
    session: PartnerSession
    tokens: TokenManager
    tenant_id: str

    async def connection(
        self, partner: PartnerSimulator, flow: ConnectionFlow = ConnectionFlow.CLIENT_CREDENTIALS
    ) -> Connection:
        return await self.connections.create(
            self.tenant_id,
            partner="sim",
            flow=flow,
            token_url=partner.token_url,
            client_id=partner.client_id,
            client_secret=partner.client_secret,
            scopes=["bookings:read"],
            refresh_token=partner.grant_refresh_token()
            if flow is ConnectionFlow.AUTHORIZATION_CODE
            else None,
        )

    async def close(self) -> None:
        await self.tokens.close()
        await self.session.close()
        await self.db.close()


async def make_stack(
    url: str, policy: RefreshPolicy | None = None, keys: tuple[str, ...] = (KEY,)
) -> Stack:
    db = Database(url)
    management = Management(db, SecretBox([SecretBox.new_key()]))
    tenant, _ = await management.create_tenant("acme")
    connections = Connections(db, SecretBox(keys))
    session = PartnerSession(LOOPBACK)
    tokens = TokenManager(connections, TokenEndpoint(session), policy, poll_interval=0.05)
    return Stack(db, connections, session, tokens, tenant.id)


@pytest.fixture
async def stack(db_url: str) -> AsyncIterator[Stack]:
    s = await make_stack(db_url, FAST_RETRY)
    yield s
    await s.close()


async def test_fifty_concurrent_callers_of_an_expired_token_cause_one_refresh(
    stack: Stack, partner: PartnerSimulator
) -> None:
    partner.token_lifetime = 0.5
    connection = await stack.connection(partner)
    first = await stack.tokens.get_token(connection.id)
    assert partner.token_requests["client_credentials"] == 1
    await asyncio.sleep(0.6)  # expired, here and at the partner
    partner.token_delay = 0.2  # the refresh takes a while: every caller arrives during it
    tokens = await asyncio.gather(*(stack.tokens.get_token(connection.id) for _ in range(50)))
    assert partner.token_requests["client_credentials"] == 2  # exactly one refresh for 50 calls
    assert len(set(tokens)) == 1 and tokens[0] != first
    row = await stack.connections.get(stack.tenant_id, connection.id)
    assert row is not None and row.refresh_ok_count == 2 and row.refresh_failed_count == 0


async def test_two_managers_on_one_database_cause_one_refresh(
    db_url: str, partner: PartnerSimulator
) -> None:
    """Two token managers with their own engines: what two processes would be."""
    a = await make_stack(db_url)
    b = await make_stack(db_url)
    try:
        connection = await a.connection(partner)
        partner.token_delay = 0.3
        results = await asyncio.gather(
            *(a.tokens.get_token(connection.id) for _ in range(25)),
            *(b.tokens.get_token(connection.id) for _ in range(25)),
        )
        assert partner.token_requests["client_credentials"] == 1
        assert len(set(results)) == 1
    finally:
        await a.close()
        await b.close()


@pytest.fixture
def busy_core() -> Iterator[None]:
    """A second core kept busy by a side process, as on a loaded machine."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


# Long enough that a second request within a test can only come from a broken single flight.
SLOW_RETRY = RefreshPolicy(retry=RetryPolicy(schedule=(60.0,), jitter=0.0))


@pytest.mark.usefixtures("busy_core")
async def test_a_failing_refresh_is_tried_once_for_two_managers(
    db_url: str, partner: PartnerSimulator
) -> None:
    """The loser of the lease waits, reads the winner's failure and does not try again.

    The race this guards: the loser reads the row while the winner still holds the lease, the
    winner stores its failure and releases, and the loser takes the free lease. Under the
    lease the loser must judge the row again, backoff included, and not request a token.
    """
    a = await make_stack(db_url, SLOW_RETRY)
    b = await make_stack(db_url, SLOW_RETRY)
    try:
        connection = await a.connection(partner)
        # A slow token endpoint: every caller of both managers arrives during the request.
        partner.token_failure, partner.token_delay = 503, 1.0
        results = await asyncio.gather(
            *(a.tokens.get_token(connection.id) for _ in range(10)),
            *(b.tokens.get_token(connection.id) for _ in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, TokenUnavailable) for r in results)
        assert partner.token_requests["client_credentials"] == 1
        row = await a.connections.get(a.tenant_id, connection.id)
        assert row is not None and row.refresh_failed_count == 1
    finally:
        await a.close()
        await b.close()


async def test_the_token_endpoint_is_behind_the_ssrf_guard(
    stack: Stack, partner: PartnerSimulator
) -> None:
    connection = await stack.connection(partner)
    session = PartnerSession(OutboundPolicy())  # loopback not allowed
    try:
        guarded = TokenManager(stack.connections, TokenEndpoint(session), FAST_RETRY)
        refused = await guarded.refresh(connection.id)
        assert refused.failing and refused.last_error is not None
        assert "loopback" in refused.last_error
        assert partner.token_requests.total() == 0
    finally:
        await session.close()


_WORKER = """
import asyncio, json, sys
from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.partners.oauth import TokenEndpoint
from interlink.partners.outbound import PartnerSession
from interlink.partners.tokens import TokenManager
from interlink.storage.connections import Connections
from interlink.storage.database import Database
from interlink.storage.secrets_box import SecretBox
from interlink.storage.tenancy import system_scope

async def main(url, key, connection_id):
    db = Database(url)
    session = PartnerSession(OutboundPolicy(allow_networks=("127.0.0.0/8",)))
    tokens = TokenManager(Connections(db, SecretBox([key])), TokenEndpoint(session))
    await db.ping()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    with system_scope("worker: token refresh, as the scheduler does"):
        got = await asyncio.gather(*(tokens.get_token(connection_id) for _ in range(25)))
    print(json.dumps(sorted(set(got))), flush=True)
    await session.close()
    await db.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_cause_one_refresh(db_url: str, partner: PartnerSimulator) -> None:
    stack = await make_stack(db_url)
    try:
        connection = await stack.connection(partner)
        partner.token_delay = 0.3
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WORKER,
                db_url,
                KEY,
                connection.id,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            for _ in range(2)
        ]
        for w in workers:
            assert w.stdout is not None
            assert (await asyncio.wait_for(w.stdout.readline(), 30)).strip() == b"ready"
        for w in workers:  # both start at once
            assert w.stdin is not None
            w.stdin.write(b"go\n")
            await w.stdin.drain()
        outputs = [await asyncio.wait_for(w.communicate(), 30) for w in workers]
        assert all(w.returncode == 0 for w in workers)
        # The last line is the worker's answer (structlog's default writes its lines above).
        seen = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
        assert seen[0] == seen[1] and len(seen[0]) == 1  # one token, in both processes
        assert partner.token_requests["client_credentials"] == 1
    finally:
        await stack.close()


async def test_a_failed_refresh_is_counted_backed_off_and_recovers(
    stack: Stack, partner: PartnerSimulator
) -> None:
    connection = await stack.connection(partner)
    partner.token_failure = 500
    with pytest.raises(TokenUnavailable, match="500"):
        await stack.tokens.get_token(connection.id)
    row = await stack.connections.get(stack.tenant_id, connection.id)
    assert row is not None
    assert row.status(time.time()) is ConnectionStatus.FAILED
    assert (row.refresh_ok_count, row.refresh_failed_count) == (0, 1)
    assert row.last_error and "500" in row.last_error
    assert partner.client_secret not in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > time.time()
    # Backing off: another caller now gets the failure without another request.
    with pytest.raises(TokenUnavailable):
        await stack.tokens.get_token(connection.id)
    assert partner.token_requests["client_credentials"] == 1

    # The background refresher retries at the backoff; still failing: counted again.
    refresher = asyncio.create_task(stack.tokens.run())
    try:

        async def failed_twice() -> bool:
            r = await stack.connections.get(stack.tenant_id, connection.id)
            return r is not None and r.refresh_failed_count >= 2

        await eventually(failed_twice, timeout=5)
        partner.token_failure = None  # the partner recovers

        async def healthy() -> bool:
            r = await stack.connections.get(stack.tenant_id, connection.id)
            return r is not None and r.status(time.time()) is ConnectionStatus.HEALTHY

        await eventually(healthy, timeout=5)
    finally:
        refresher.cancel()
    row = await stack.connections.get(stack.tenant_id, connection.id)
    assert row is not None and row.refresh_ok_count == 1 and row.consecutive_failures == 0
    assert row.last_error is None
    assert await stack.tokens.get_token(connection.id)


async def test_tokens_are_refreshed_before_they_expire(
    db_url: str, partner: PartnerSimulator
) -> None:
    stack = await make_stack(db_url, RefreshPolicy(refresh_fraction=0.5))
    try:
        partner.token_lifetime = 3.0  # refreshed at 1.5 s
        connection = await stack.connection(partner)
        first = await stack.tokens.get_token(connection.id)
        before = await stack.connections.get(stack.tenant_id, connection.id)
        assert before is not None and before.expires_at is not None
        # Past the refresh point, the caller still gets the valid token at once, and a refresh
        # starts behind it.
        await asyncio.sleep(1.6)
        assert await stack.tokens.get_token(connection.id) == first
        await eventually(lambda: partner.token_requests["client_credentials"] == 2, timeout=5)
        after = await stack.connections.get(stack.tenant_id, connection.id)
        assert after is not None and after.last_refreshed_at is not None
        assert after.last_refreshed_at < before.expires_at  # before the old one ran out
        assert await stack.tokens.get_token(connection.id) != first

        # With nobody asking, the background refresher keeps it renewed: two more tokens are
        # stored, and the row is healthy as each is (a request counted by the partner may not be
        # stored yet, so the check reads the row, not the partner's count).
        async def renewed_twice_more() -> bool:
            row = await stack.connections.get(stack.tenant_id, connection.id)
            return (
                row is not None
                and row.refresh_ok_count >= 4
                and row.status(time.time()) is ConnectionStatus.HEALTHY
            )

        refresher = asyncio.create_task(stack.tokens.run())
        try:
            await eventually(renewed_twice_more, timeout=10)
        finally:
            refresher.cancel()
        assert partner.token_requests["client_credentials"] >= 4
    finally:
        await stack.close()


async def test_authorization_code_refresh_tokens_rotate(
    stack: Stack, partner: PartnerSimulator
) -> None:
    connection = await stack.connection(partner, ConnectionFlow.AUTHORIZATION_CODE)
    first = await stack.tokens.get_token(connection.id)
    # The partner's refresh tokens work once: the second refresh only works with the new one.
    second = await stack.tokens.refresh(connection.id)
    assert second.refresh_ok_count == 2 and not second.failing
    assert second.access_token is not None and second.access_token.reveal() != first
    assert partner.token_requests["refresh_token"] == 2

    code = partner.issue_code()
    exchanged = await stack.connections.create(
        stack.tenant_id,
        partner="sim",
        flow=ConnectionFlow.AUTHORIZATION_CODE,
        token_url=partner.token_url,
        client_id=partner.client_id,
        client_secret=partner.client_secret,
        scopes=[],
    )
    # Nothing to refresh until it is authorized: the background refresher leaves it alone.
    assert exchanged.id not in await stack.connections.due(time.time())
    # A refresh already running (an operator's, say) does not swallow the code.
    racing = asyncio.create_task(stack.tokens.refresh(exchanged.id))
    await asyncio.sleep(0)
    authorized = await stack.tokens.authorize(exchanged.id, code, "http://127.0.0.1/cb")
    assert authorized.refresh_token is not None and not authorized.failing
    assert (await racing).failing  # it had no refresh token to use
    assert partner.token_requests["authorization_code"] == 1


async def test_a_wrong_secret_fails_with_the_partners_words_not_the_secret(
    stack: Stack, partner: PartnerSimulator
) -> None:
    connection = await stack.connections.create(
        stack.tenant_id,
        partner="sim",
        flow=ConnectionFlow.CLIENT_CREDENTIALS,
        token_url=partner.token_url,
        client_id=partner.client_id,
        client_secret="not-the-secret",
        scopes=[],
    )
    after = await stack.tokens.refresh(connection.id)
    assert after.failing and after.last_error is not None
    assert "invalid_client" in after.last_error and "not-the-secret" not in after.last_error


async def test_nothing_secret_is_stored_readable(stack: Stack, partner: PartnerSimulator) -> None:
    connection = await stack.connection(partner, ConnectionFlow.AUTHORIZATION_CODE)
    access = await stack.tokens.get_token(connection.id)
    held = await stack.connections.get(stack.tenant_id, connection.id)
    assert held is not None and held.refresh_token is not None
    refresh = held.refresh_token.reveal()
    async with stack.db.read() as conn:
        row = (
            await conn.execute(
                connections_table.select().where(connections_table.c.id == connection.id)
            )
        ).one()
    raw = json.dumps([str(v) for v in row])
    for plaintext in (access, refresh, partner.client_secret):
        assert plaintext not in raw
    assert row.access_token.startswith("gAAAAA")  # a Fernet token
    # and not in the SQLite files either (the WAL included)
    path = stack.db.url.removeprefix("sqlite+aiosqlite:///")
    if stack.db.is_sqlite:
        for file in (Path(path), Path(path + "-wal")):
            if file.exists():
                data = file.read_bytes()
                for plaintext in (access, refresh, partner.client_secret):
                    assert plaintext.encode() not in data
    assert "sim-secret" not in repr(held) and access not in repr(held)


async def test_a_key_rotation_rewrites_every_ciphertext(
    db_url: str, partner: PartnerSimulator
) -> None:
    old = await make_stack(db_url)
    new_key = SecretBox.new_key()
    try:
        connection = await old.connection(partner, ConnectionFlow.AUTHORIZATION_CODE)
        token = await old.tokens.get_token(connection.id)
        # The new key first, the old one still there: everything is readable before rotation.
        both = Connections(old.db, SecretBox([new_key, KEY]))
        before = await both.get(old.tenant_id, connection.id)
        assert before is not None and before.access_token is not None
        assert before.access_token.reveal() == token
        assert await both.reencrypt() == 1
        only_new = Connections(old.db, SecretBox([new_key]))
        after = await only_new.get(old.tenant_id, connection.id)
        assert after is not None and after.access_token is not None
        assert after.access_token.reveal() == token
        assert after.client_secret.reveal() == partner.client_secret
        with pytest.raises(SecretUnreadable):
            await old.connections.get(old.tenant_id, connection.id)  # the old key alone: no more
    finally:
        await old.close()


async def test_another_tenants_connection_is_not_found(
    stack: Stack, partner: PartnerSimulator
) -> None:
    connection = await stack.connection(partner)
    other, _ = await Management(stack.db, SecretBox([SecretBox.new_key()])).create_tenant("other")
    assert await stack.connections.get(other.id, connection.id) is None
    assert not await stack.connections.delete(other.id, connection.id)
    assert await stack.connections.get(stack.tenant_id, connection.id) is not None


async def test_a_refresh_lease_has_one_holder_and_lapses(stack: Stack) -> None:
    # The lease is an UPDATE … WHERE free or lapsed: one holder at a time, a lapsed one taken over.
    connection = await stack.connections.create(
        stack.tenant_id,
        partner="sim",
        flow=ConnectionFlow.CLIENT_CREDENTIALS,
        token_url="http://127.0.0.1:9/token",
        client_id="c",
        client_secret="s",
        scopes=[],
    )
    now = time.time()
    assert await stack.connections.take_lease(connection.id, "a", now, now + 10)
    assert not await stack.connections.take_lease(connection.id, "b", now + 1, now + 11)
    assert await stack.connections.take_lease(connection.id, "b", now + 11, now + 21)
    # a's lease lapsed: what a writes now is refused
    assert not await stack.connections.store_failure(
        connection.id, "a", error="late", next_attempt_at=now
    )
    async with stack.db.read() as conn:
        owner = (
            await conn.execute(
                sa.select(connections_table.c.refresh_lease_owner).where(
                    connections_table.c.id == connection.id
                )
            )
        ).scalar_one()
    assert owner == "b"


async def test_the_cli_rotates_the_key(
    tmp_path: Path, partner: PartnerSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from interlink.cli import app

    url = f"sqlite:///{tmp_path}/rotate.db"
    await asyncio.to_thread(migrate.upgrade, url)
    stack = await make_stack(url)
    new_key = SecretBox.new_key()
    try:
        connection = await stack.connection(partner)
        token = await stack.tokens.get_token(connection.id)
        monkeypatch.chdir(tmp_path)
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["connections", "rotate-key"],
            env={"INTERLINK_DATABASE_URL": url, "INTERLINK_SECRETS_KEY": f"{new_key},{KEY}"},
        )
        assert result.exit_code == 0, result.output
        assert "1 connections" in result.output
        # Resumable: what is under the first key already is left alone.
        again = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["secrets", "rotate-key"],
            env={"INTERLINK_DATABASE_URL": url, "INTERLINK_SECRETS_KEY": f"{new_key},{KEY}"},
        )
        assert again.exit_code == 0 and "0 connections" in again.output, again.output
        rotated = await Connections(stack.db, SecretBox([new_key])).get_any(connection.id)
        assert rotated is not None and rotated.access_token is not None
        assert rotated.access_token.reveal() == token
        # Without the key that encrypted them, the command says so rather than crash.
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["connections", "rotate-key"],
            env={"INTERLINK_DATABASE_URL": url, "INTERLINK_SECRETS_KEY": SecretBox.new_key()},
        )
        assert result.exit_code == 1 and "keep the old key" in result.output
    finally:
        await stack.close()
