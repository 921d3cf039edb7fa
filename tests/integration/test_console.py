"""The console (/console) in-process: login and its cookie, CSRF, tenant isolation, every page
rendering on the backend under test (SQLite, or PostgreSQL with INTERLINK_TEST_BACKEND)."""

from __future__ import annotations

import re
import time

import httpx
from tests.integration.conftest import ADMIN, Harness, eventually

from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.storage.console_sessions import TOUCH_SECONDS, ConsoleSessions
from interlink.storage.tenancy import system_scope

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/login")
    assert form.status_code == 200
    return await client.post("/console/login", data={"key": key, "csrf": csrf_of(form)})


async def test_login_cookie_pages_and_logout(harness: Harness) -> None:
    key = await harness.tenant("acme")
    client = harness.client
    r = await client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = await log_in(client, key)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and "interlink_console=" in v
    )
    flags = {p.strip().lower() for p in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    for path in (
        "/console/",
        "/console/events",
        "/console/live",
        "/console/live/rows",
        "/console/endpoints",
        "/console/dead",
        "/console/quarantine",
        "/console/partners",
    ):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:2000])
        assert key not in page.text
        assert "content-security-policy" in page.headers
    home = await client.get("/console/")
    r = await client.post("/console/logout", data={"csrf": csrf_of(home)})
    assert r.status_code == 303
    r = await client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


async def _published(harness: Harness, key: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = await harness.client.post(
            "/api/v1/events",
            json={"type": "order.placed", "data": {"i": i}, "key": f"b-{i}"},
            headers=harness.auth(key),
        )
        assert r.status_code == 202, r.text
        ids.append(str(r.json()["id"]))
    return ids


async def test_a_post_without_the_csrf_token_is_refused(harness: Harness) -> None:
    key = await harness.tenant("acme")
    client = harness.client
    form = await client.get("/console/login")
    assert (await client.post("/console/login", data={"key": key})).status_code == 403
    r = await client.post("/console/login", data={"key": key, "csrf": "forged"})
    assert r.status_code == 403
    r = await client.post("/console/login", data={"key": key, "csrf": csrf_of(form)})
    assert r.status_code == 303
    home = await client.get("/console/")
    for path in ("/console/logout", "/console/dead/redrive", "/console/quarantine/reprocess"):
        assert (await client.post(path, data={})).status_code == 403, path
        assert (await client.post(path, data={"csrf": "x" * 64})).status_code == 403, path
    # Another session's token does not pass either: it is derived from each session's secret.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://interlink")
    async with other:
        await log_in(other, key)
        theirs = csrf_of(await other.get("/console/"))
    assert theirs != csrf_of(home)
    assert (await client.post("/console/logout", data={"csrf": theirs})).status_code == 403
    # Still logged in: the refused logouts did nothing.
    assert (await client.get("/console/", follow_redirects=False)).status_code == 200


async def test_a_wrong_key_is_refused_and_not_echoed(harness: Harness) -> None:
    client = harness.client
    wrong = "ik_" + "w" * 43
    form = await client.get("/console/login")
    r = await client.post("/console/login", data={"key": wrong, "csrf": csrf_of(form)})
    assert r.status_code == 401 and wrong not in r.text
    assert "interlink_console=" not in r.headers.get("set-cookie", "")


async def test_another_tenants_ids_are_not_found(harness: Harness) -> None:
    mine, theirs = await harness.tenant("mine"), await harness.tenant("theirs")
    (their_event,) = await _published(harness, theirs, 1)
    r = await harness.client.post(
        "/api/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=harness.auth(theirs)
    )
    their_endpoint = r.json()["endpoint"]["id"]
    await log_in(harness.client, mine)
    for path in (f"/console/events/{their_event}", f"/console/endpoints/{their_endpoint}"):
        page = await harness.client.get(path)
        assert page.status_code == 404, path
        assert their_event not in page.text or path.endswith(their_event)
    csrf = csrf_of(await harness.client.get("/console/"))
    r = await harness.client.post(f"/console/endpoints/{their_endpoint}/pause", data={"csrf": csrf})
    assert r.status_code == 404
    await log_in_as_admin_for(harness.client, "theirs")
    assert (await harness.client.get(f"/console/events/{their_event}")).status_code == 200


async def log_in_as_admin_for(client: httpx.AsyncClient, tenant_name: str) -> None:
    client.cookies.clear()
    r = await log_in(client, ADMIN)
    assert r.status_code == 303 and r.headers["location"] == "/console/tenants"
    assert (await client.get("/console/", follow_redirects=False)).status_code == 303
    tenants = await client.get("/console/tenants")
    row = re.search(rf"<td>{tenant_name}</td><td><code>([^<]+)</code>", tenants.text)
    assert row is not None, tenants.text
    r = await client.post(
        "/console/tenants", data={"csrf": csrf_of(tenants), "tenant_id": row.group(1)}
    )
    assert r.status_code == 303


async def test_events_endpoint_actions_and_redrive(harness: Harness) -> None:
    key = await harness.tenant("acme")
    r = await harness.client.post(
        "/api/v1/endpoints",
        json={"url": "http://127.0.0.1:9/down", "retry_schedule": [0]},
        headers=harness.auth(key),
    )
    endpoint_id = r.json()["endpoint"]["id"]
    sub = {"endpoint_id": endpoint_id, "event_types": ["order.*"]}
    await harness.post(key, "/api/v1/subscriptions", sub)
    ids = await _published(harness, key, 3)
    client = harness.client
    await log_in(client, key)
    events = await client.get("/console/events", params={"type": "order.placed"})
    assert all(i in events.text for i in ids)
    assert (await client.get("/console/events", params={"key": "b-1"})).text.count(
        "event-link"
    ) == 1
    page = await client.get(f"/console/events/{ids[0]}")
    assert page.status_code == 200 and "Received" in page.text

    async def dead() -> bool:
        listing = await harness.get(key, "/api/v1/deliveries", status="dead")
        return len(listing.json()["data"]) == 3

    await eventually(dead, timeout=20)
    overview = await client.get("/console/")
    assert '<span class="n" id="dead-count">3</span>' in overview.text
    dead_page = await client.get("/console/dead")
    r = await client.post("/console/dead/redrive", data={"csrf": csrf_of(dead_page)})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/jobs/")
    job = await client.get(r.headers["location"])
    assert job.status_code == 200 and 'id="job-bar"' in job.text

    csrf = csrf_of(job)
    base = f"/console/endpoints/{endpoint_id}"
    assert (await client.post(f"{base}/pause", data={"csrf": csrf})).status_code == 303
    assert 'id="status">paused' in (await client.get(base)).text
    assert (await client.post(f"{base}/resume", data={"csrf": csrf})).status_code == 303
    assert 'id="status">active' in (await client.get(base)).text
    tested = await client.post(f"{base}/test", data={"csrf": csrf})
    assert tested.status_code == 200 and "A test event was sent" in tested.text
    rotated = await client.post(f"{base}/rotate", data={"csrf": csrf})
    assert rotated.status_code == 200 and 'id="new-secret">whsec_' in rotated.text
    assert "whsec_" not in (await client.get(base)).text  # shown once


async def test_the_cookie_is_secure_over_https(harness: Harness) -> None:
    key = await harness.tenant("acme")
    transport = harness.client._transport
    async with httpx.AsyncClient(transport=transport, base_url="https://interlink") as client:
        r = await log_in(client, key)
        cookie = next(
            v for k, v in r.headers.multi_items() if k == "set-cookie" and "interlink_console=" in v
        )
        assert "secure" in {p.strip().lower() for p in cookie.split(";")}


async def test_sessions_end_when_idle_too_long_past_their_limit_and_at_logout(
    harness: Harness,
) -> None:
    key = await harness.tenant("acme")
    with system_scope("test"):
        found = await harness.system.management.keys.live_key(key)
    assert found is not None
    key_id, tenant_id = found
    sessions = ConsoleSessions(harness.system.db, idle=60.0, longest=600.0)
    _, token = await sessions.create(tenant_id, key_id, now=1000.0)
    stored = await sessions.find(token, now=1001.0)
    assert stored is not None and stored.id_hash != token and token not in repr(stored)
    assert await sessions.find(token + "x", now=1001.0) is None
    assert await sessions.find(token, now=1059.0) is not None  # 58 s idle: still alive
    assert await sessions.find(token, now=1061.0 + TOUCH_SECONDS) is None  # idle too long
    _, token = await sessions.create(tenant_id, key_id, now=2000.0)
    for now in range(2050, 2600, 50):  # active all along: touched at most once a minute
        assert await sessions.find(token, now=float(now)) is not None, now
    assert await sessions.find(token, now=2600.0) is None  # the absolute limit
    _, token = await sessions.create(tenant_id, key_id, now=3000.0)
    await sessions.end(token)
    assert await sessions.find(token, now=3001.0) is None


async def test_event_counts_are_read_once_from_the_log_and_kept_per_tenant(
    harness: Harness,
) -> None:
    mine, theirs = await harness.tenant("mine"), await harness.tenant("theirs")
    await _published(harness, mine, 2)
    counts = harness.system.event_counts
    now = time.time()
    await counts.refresh(now)
    with system_scope("test"):
        my_id = await harness.system.management.tenant_for_key(mine)
        their_id = await harness.system.management.tenant_for_key(theirs)
    assert my_id is not None and their_id is not None
    assert list(counts.per_source(my_id, now - 3600).values()) == [2]
    await _published(harness, mine, 1)
    await _published(harness, theirs, 4)
    await counts.refresh(time.time())
    assert list(counts.per_source(my_id, now - 3600).values()) == [3]
    assert list(counts.per_source(their_id, now - 86400).values()) == [4]
    assert counts.per_source(my_id, now + 3600) == {}  # nothing in the future's slots
    await log_in(harness.client, mine)
    overview = await harness.client.get("/console/")
    assert '<td class="num">3</td><td class="num">3</td>' in overview.text


async def test_revoking_the_key_ends_its_sessions(harness: Harness) -> None:
    key = await harness.tenant("acme")
    client = harness.client
    await log_in(client, key)
    assert (await client.get("/console/", follow_redirects=False)).status_code == 200
    with system_scope("test"):
        found = await harness.system.management.keys.live_key(key)
    assert found is not None
    key_id, tenant_id = found
    revoked = await client.delete(
        f"/api/v1/tenants/{tenant_id}/keys/{key_id}", headers=harness.auth(ADMIN)
    )
    assert revoked.status_code == 204, revoked.text
    r = await client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


async def test_the_overview_says_when_a_source_is_quieter_than_usual(harness: Harness) -> None:
    key = await harness.tenant("acme")
    source = await harness.post(key, "/api/v1/sources", {"name": "pms"})
    source_id = source["source"]["id"]
    with system_scope("test"):
        tenant_id = await harness.system.management.tenant_for_key(key)
    assert tenant_id is not None
    now = time.time()
    # Nine events an hour over the last two days, none in the last two hours.
    quiet = [
        Event(
            id=new_id("event"),
            tenant_id=tenant_id,
            source_id=source_id,
            idempotency_key=new_id("event"),
            type="order.placed",
            key=None,
            received_at=now - 7200 - i * 400,
            occurred_at=None,
            data=b"{}",
            raw=b"{}",
            headers={},
        )
        for i in range(400)
    ]
    with system_scope("test: appends as ingest does"):
        await harness.system.log_writer.append(sorted(quiet, key=lambda e: e.received_at))
    await log_in(harness.client, key)
    overview = await harness.client.get("/console/")
    assert '<span class="n" id="quiet-count">1</span>' in overview.text
    assert "Volume drop: " in overview.text and ">pms</a>" in overview.text


async def test_a_redrive_job_can_be_cancelled_or_says_it_has_finished(harness: Harness) -> None:
    key = await harness.tenant("acme")
    await log_in(harness.client, key)
    dead = await harness.client.get("/console/dead")
    r = await harness.client.post("/console/dead/redrive", data={"csrf": csrf_of(dead)})
    job_url = r.headers["location"]
    r = await harness.client.post(f"{job_url}/cancel", data={"csrf": csrf_of(dead)})
    assert r.status_code == 303 and r.headers["location"] == job_url
    page = await harness.client.get(job_url)
    assert re.search(r'id="job-status">(cancelled|succeeded)<', page.text), page.text
    progress = await harness.client.get(f"{job_url}/progress")
    assert progress.status_code == 200 and "hx-trigger" not in progress.text  # it stops polling
    other = await harness.tenant("other")
    harness.client.cookies.clear()
    await log_in(harness.client, other)
    assert (await harness.client.get(job_url)).status_code == 404


async def test_bad_input_is_a_4xx_page_never_a_500(harness: Harness) -> None:
    await log_in(harness.client, await harness.tenant("acme"))
    for path, params in (
        ("/console/events", {"cursor": "!!not-a-cursor"}),
        ("/console/events", {"after": "yesterday"}),
        ("/console/dead", {"before": "2026-13-40T99:00"}),
        ("/console/quarantine", {"stage": "nowhere"}),
        ("/console/quarantine", {"status": "maybe"}),
        ("/console/endpoints", {"cursor": "%%%"}),
    ):
        r = await harness.client.get(path, params=params)
        assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), (path, params)
