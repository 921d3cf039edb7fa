"""`/` is not a 404: it sends a browser to the console (its login page first)."""

from __future__ import annotations

from tests.integration.conftest import Harness


async def test_the_root_redirects_to_the_console(harness: Harness) -> None:
    r = await harness.client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/console/"
    followed = await harness.client.get("/", follow_redirects=True)
    assert followed.status_code == 200 and "text/html" in followed.headers["content-type"]
