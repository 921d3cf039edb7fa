"""Secrets at rest: no source or endpoint secret is in the database in plaintext, on SQLite (the
raw bytes of the file and its WAL) or PostgreSQL (a ``pg_dump``); verification and signing still
work; migration 0014 seals rows written before; ``interlink secrets rotate-key`` re-encrypts
under a new key, resumably; PostgreSQL refuses to start without a key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.canary import Sweep, needles
from tests.conftest import app_url
from tests.integration.conftest import Harness, Receiver, eventually, running, settings_for, signed

from interlink.app import Interlink
from interlink.storage import migrate, rls
from interlink.storage.database import Database
from interlink.storage.sealed_secrets import rotate_key
from interlink.storage.secrets_box import SecretBox, SecretsKeyRequired, is_sealed
from interlink.storage.tables import endpoints, sources
from interlink.storage.tenancy import system_scope

BACKENDS = ["sqlite", "postgres"]


def _settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Any:
    if backend == "sqlite":
        # The SQLite case is itself whatever backend the run defaults to (make test-postgres):
        # none of the default's PostgreSQL migration URL or key.
        extra.setdefault("secrets_key", ())
        return settings_for(
            tmp_path,
            database_url=f"sqlite:///{tmp_path}/interlink.db",
            migration_database_url=None,
            **extra,
        )
    url = request.getfixturevalue("postgres_database")
    extra.setdefault("secrets_key", [SecretBox.new_key()])
    return settings_for(tmp_path, database_url=app_url(url), migration_database_url=url, **extra)


def stored_bytes(settings: Any) -> bytes:
    """Every byte the database holds: the SQLite file with its WAL, or a pg_dump of it."""
    url = settings.migration_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    # As the schema's owner, whom row-level security binds too (FORCE): the system scope
    # shows it every tenant's rows (storage/rls.py).
    env = {**os.environ, "PGOPTIONS": f"-c {rls.SCOPE_SETTING}={rls.SYSTEM}"}
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "--enable-row-security", f"--dbname={url}"],
        capture_output=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert b"CREATE TABLE public.endpoints" in dump.stdout  # a dump of the real thing
    return dump.stdout


def found_in(data: bytes, secrets: list[str]) -> list[str]:
    return [s[:8] + "…" for s in secrets if any(n.encode() in data for n in needles(s))]


async def wire(h: Harness, canary: Sweep, receiver: Receiver) -> dict[str, str]:
    """Sources with generated, supplied and rotated secrets; an endpoint with a supplied one."""
    key = await h.tenant()
    planted = canary.plant("github source secret")
    github = await h.post(
        key, "/api/v1/sources", {"name": "gh", "verifier": "github", "secrets": [planted]}
    )
    sw = await h.post(key, "/api/v1/sources", {"name": "sw"})
    rotated = await h.post(
        key,
        f"/api/v1/sources/{sw['source']['id']}/secrets",
        {"expire_current_in_seconds": 3600},
    )
    receiver.secret = "whsec_" + "c2VjcmV0LWF0LXJlc3QtY2FuYXJ5LTAxMjM0NTY3ODk="
    ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url, "secret": receiver.secret})
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    return {
        "source": sw["source"]["id"],
        "old": sw["secrets"][0],
        "new": rotated["secret"],
        "github": planted,
        "github_source": github["source"]["id"],
        "endpoint": receiver.secret,
    }


async def send(h: Harness, source: str, secret: str, msg: str) -> None:
    body, headers = signed(secret, msg, {"type": "booking.created", "data": {"m": msg}})
    r = await h.client.post(f"/in/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("backend", BACKENDS)
async def test_no_secret_is_stored_in_plaintext_and_all_still_verify_and_sign(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    canary: Sweep,
    receiver_factory: Callable[..., Any],
) -> None:
    settings = _settings(backend, tmp_path, request)
    receiver = await receiver_factory()
    async with running(settings, canary) as h:
        w = await wire(h, canary, receiver)
        # Both of the rotated source's secrets verify; the receiver verifies our signature.
        await send(h, w["source"], w["old"], "m-old")
        await send(h, w["source"], w["new"], "m-new")
        await eventually(lambda: len(receiver.received) == 2)
        planted = [w["old"], w["new"], w["github"], w["endpoint"]]
        assert not found_in(stored_bytes(settings), planted)
        with system_scope("test: every tenant's secrets"):
            async with h.system.db.read() as conn:
                held = [
                    *(await conn.execute(sa.select(sources.c.secrets))).scalars(),
                    *(await conn.execute(sa.select(endpoints.c.secret))).scalars(),
                ]
        assert held and all(isinstance(v, str) and is_sealed(v) for v in held)


async def _plaintext_rows(settings: Any, secret: str, endpoint_secret: str, url: str) -> None:
    """A database as release 0013 left it: a tenant, a source and an endpoint in plaintext."""
    await asyncio.to_thread(migrate.upgrade, settings.migration_url, "0013")
    db = Database(settings.migration_url)
    now = time.time()
    try:
        with system_scope("test: rows as an older release wrote them"):
            async with db.write() as conn:
                await conn.execute(
                    sa.text("INSERT INTO tenants VALUES ('tnt_old', 'old', :now)"), {"now": now}
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at)"
                        " VALUES ('key_old', 'tnt_old', :hash, 'ik_old', :now)"
                    ),
                    {"hash": "0" * 64, "now": now},
                )
                await conn.execute(
                    sources.insert().values(
                        id="src_old",
                        tenant_id="tnt_old",
                        name="old",
                        verifier="standard_webhooks",
                        verifier_config={},
                        secrets=[secret],
                        envelope={},
                        max_body_bytes=1024 * 1024,
                        tolerance_seconds=300,
                        created_at=now,
                    )
                )
                await conn.execute(
                    endpoints.insert().values(
                        id="ep_old",
                        tenant_id="tnt_old",
                        url=url,
                        description="",
                        secret=endpoint_secret,
                        status="active",
                        retry_schedule=[1],
                        timeout_seconds=5,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO subscriptions VALUES"
                        " ('sub_old', 'tnt_old', 'ep_old', '[\"*\"]', :now, NULL)"
                    ),
                    {"now": now},
                )
    finally:
        await db.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migration_seals_plaintext_rows(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    canary: Sweep,
    receiver_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # SQLite's key file goes to .interlink here
    settings = _settings(backend, tmp_path, request)
    receiver = await receiver_factory()
    receiver.secret = "whsec_" + "bWlncmF0ZWQtZW5kcG9pbnQtc2VjcmV0LTAxMjM0NTY="
    secret = "whsec_" + "bWlncmF0ZWQtc291cmNlLXNlY3JldC0wMTIzNDU2Nzg="
    canary.secret(secret, "plaintext source secret")
    canary.secret(receiver.secret, "plaintext endpoint secret")
    await _plaintext_rows(settings, secret, receiver.secret, receiver.url)
    assert found_in(stored_bytes(settings), [secret, receiver.secret])  # the test's premise
    # Without the key, the migration says what it needs rather than store plaintext on.
    with pytest.raises(RuntimeError, match="needs the secrets key"):
        await asyncio.to_thread(migrate.upgrade, settings.migration_url)
    async with running(settings, canary) as h:  # start-up migrates with its key
        assert not found_in(stored_bytes(settings), [secret, receiver.secret])
        await send(h, "src_old", secret, "m-migrated")
        await eventually(lambda: len(receiver.received) == 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_rotate_key_re_encrypts_everything_once(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    canary: Sweep,
    receiver_factory: Callable[..., Any],
) -> None:
    settings = _settings(backend, tmp_path, request, secrets_key=[SecretBox.new_key()])
    old = settings.secrets_key[0]
    new = SecretBox.new_key()
    canary.secrets_key(new)
    receiver = await receiver_factory()
    async with running(settings, canary) as h:
        w = await wire(h, canary, receiver)
    db = Database(settings.database_url)
    try:
        counts = await rotate_key(db, SecretBox([new, old]), batch=1)
        assert counts == {"sources": 2, "endpoints": 1, "connections": 0}
        # Resumable: a second run (or the rest of a stopped one) finds nothing left to do.
        assert await rotate_key(db, SecretBox([new, old])) == dict.fromkeys(counts, 0)
    finally:
        await db.close()
    rotated = settings_for(
        tmp_path,
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        secrets_key=[new],  # the old key is gone: everything must open with the new one
    )
    async with running(rotated, canary) as h:
        await send(h, w["source"], w["new"], "m-after-rotation")
        await eventually(lambda: len(receiver.received) == 1)


async def test_postgres_refuses_to_start_without_a_secrets_key(
    tmp_path: Path, postgres_database: str
) -> None:
    settings = settings_for(tmp_path, database_url=app_url(postgres_database), secrets_key=[])
    with pytest.raises(SecretsKeyRequired, match="INTERLINK_SECRETS_KEY"):
        Interlink(settings)
