"""API keys: listed (never the key), labelled, revoked by the admin or the tenant itself,
optionally expiring; a revoked key is refused by every process at once; another tenant's keys
are not found."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.canary import Sweep
from tests.conftest import app_url
from tests.integration.conftest import ADMIN, TEST_KEY, Harness, running, settings_for

from interlink.storage.tables import api_keys
from interlink.storage.tenancy import system_scope


async def tenant(h: Harness, name: str) -> tuple[str, str]:
    r = await h.client.post("/api/v1/tenants", json={"name": name}, headers=h.auth(ADMIN))
    assert r.status_code == 201, r.text
    return r.json()["tenant"]["id"], r.json()["api_key"]


async def test_keys_are_listed_labelled_and_revoked_never_shown(harness: Harness) -> None:
    h = harness
    tid, first = await tenant(h, "acme")
    created = await h.post(
        ADMIN, f"/api/v1/tenants/{tid}/keys", {"label": "ci", "expires_in_seconds": 3600}
    )
    second, record = created["api_key"], created["key"]
    assert record["label"] == "ci" and record["expires_at"] and record["status"] == "active"
    assert (await h.get(second, "/api/v1/sources")).status_code == 200
    # The tenant lists its own keys: records only, the key's prefix to tell them apart.
    listing = await h.get(first, f"/api/v1/tenants/{tid}/keys")
    assert listing.status_code == 200, listing.text
    keys = {k["id"]: k for k in listing.json()["data"]}
    assert set(keys) == {record["id"], *keys} and len(keys) == 2
    assert first not in listing.text and second not in listing.text
    assert keys[record["id"]]["prefix"] == second[:10]
    assert keys[record["id"]]["last_used_at"] is not None  # used once, above
    # Labelled by the tenant; revoked by the tenant: refused at once.
    relabel = await h.client.patch(
        f"/api/v1/tenants/{tid}/keys/{record['id']}",
        json={"label": "old ci"},
        headers=h.auth(first),
    )
    assert relabel.status_code == 200 and relabel.json()["label"] == "old ci"
    r = await h.client.delete(f"/api/v1/tenants/{tid}/keys/{record['id']}", headers=h.auth(first))
    assert r.status_code == 204, r.text
    assert (await h.get(second, "/api/v1/sources")).status_code == 401
    again = await h.client.delete(
        f"/api/v1/tenants/{tid}/keys/{record['id']}", headers=h.auth(ADMIN)
    )
    assert again.status_code == 404  # revoked already
    listed = (await h.get(first, f"/api/v1/tenants/{tid}/keys")).json()["data"]
    assert {k["id"]: k["status"] for k in listed}[record["id"]] == "revoked"


async def test_another_tenants_keys_are_not_found(harness: Harness) -> None:
    h = harness
    a, a_key = await tenant(h, "a")
    b, b_key = await tenant(h, "b")
    a_keys = (await h.get(a_key, f"/api/v1/tenants/{a}/keys")).json()["data"]
    a_key_id = a_keys[0]["id"]
    for path in (f"/api/v1/tenants/{a}/keys/{a_key_id}", f"/api/v1/tenants/{b}/keys/{a_key_id}"):
        r = await h.client.delete(path, headers=h.auth(b_key))
        assert r.status_code == 404, (path, r.text)
    assert (await h.get(b_key, f"/api/v1/tenants/{a}/keys")).status_code == 404
    patched = await h.client.patch(
        f"/api/v1/tenants/{a}/keys/{a_key_id}", json={"label": "x"}, headers=h.auth(b_key)
    )
    assert patched.status_code == 404
    assert (await h.get(a_key, "/api/v1/sources")).status_code == 200  # untouched
    # Only the admin creates keys.
    r = await h.client.post(f"/api/v1/tenants/{b}/keys", json={}, headers=h.auth(b_key))
    assert r.status_code == 403
    missing = await h.client.post("/api/v1/tenants/tnt_nope/keys", headers=h.auth(ADMIN))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"expires_in_seconds": 5}, {"label": ""}, {"label": "x" * 201}, {"scope": "all"}],
)
async def test_bad_key_requests_are_refused_clearly(harness: Harness, body: object) -> None:
    tid, _ = await tenant(harness, "acme")
    r = await harness.client.post(
        f"/api/v1/tenants/{tid}/keys", json=body, headers=harness.auth(ADMIN)
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_an_expired_key_is_refused(harness: Harness) -> None:
    tid, _ = await tenant(harness, "acme")
    created = await harness.post(ADMIN, f"/api/v1/tenants/{tid}/keys", {"expires_in_seconds": 60})
    assert (await harness.get(created["api_key"], "/api/v1/sources")).status_code == 200
    with system_scope("test: expire a key"):
        async with harness.system.db.write() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == created["key"]["id"])
                .values(expires_at=time.time() - 1)
            )
    assert (await harness.get(created["api_key"], "/api/v1/sources")).status_code == 401


async def test_a_revoked_key_is_refused_by_every_process_at_once(
    tmp_path: Path, postgres_database: str, canary: Sweep
) -> None:
    """Two Interlink instances on one PostgreSQL database: a key revoked through one is refused
    by the other on its very next request (no cache to wait out, so well within a second)."""
    settings = settings_for(
        tmp_path,
        database_url=app_url(postgres_database),
        migration_database_url=postgres_database,
        secrets_key=[TEST_KEY],  # the same in both processes, as a deployment's must be
    )
    async with running(settings, canary) as one, running(settings, canary) as two:
        tid, key = await tenant(one, "acme")
        created = await one.post(ADMIN, f"/api/v1/tenants/{tid}/keys", {})
        assert (await two.get(created["api_key"], "/api/v1/sources")).status_code == 200
        revoked = await one.client.delete(
            f"/api/v1/tenants/{tid}/keys/{created['key']['id']}", headers=one.auth(key)
        )
        assert revoked.status_code == 204
        started = time.monotonic()
        assert (await two.get(created["api_key"], "/api/v1/sources")).status_code == 401
        assert time.monotonic() - started < 1.0
        assert (await two.get(key, "/api/v1/sources")).status_code == 200
