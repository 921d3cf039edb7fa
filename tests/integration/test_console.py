"""The console (/console) in-process: login and its cookie, CSRF, tenant isolation, every page
rendering on the backend under test (SQLite, or PostgreSQL with INTERLINK_TEST_BACKEND)."""

from __future__ import annotations

import re

import httpx
from tests.integration.conftest import Harness

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
