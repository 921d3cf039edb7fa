"""``/stream-demo`` in a real browser (offline Chromium): events arrive live through an
``EventSource``, and the page resumes, without a gap or a duplicate, after Interlink restarts."""

from __future__ import annotations

import asyncio
import json

import pytest
from playwright.async_api import expect

from .browser import OfflineBrowser
from .conftest import Api, InterlinkProcess

pytestmark = pytest.mark.e2e


async def test_the_demo_page_streams_live_and_resumes_after_a_restart(
    interlink: InterlinkProcess, api: Api, browser: OfflineBrowser
) -> None:
    tenant = await api.tenant("demo")
    source = await api.source(tenant)

    async def ingest(n: int, first: int) -> None:
        for i in range(first, first + n):
            body = json.dumps({"type": "booking.created", "id": f"b{i}", "data": {"i": i}})
            reply = await api.ingest(source, f"msg_{i}", body.encode())
            assert reply.status == 202, reply.body

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = await page.goto(f"{interlink.base_url}/stream-demo", wait_until="load")
    assert response is not None and response.status == 200
    await page.fill("#key", tenant.key)
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_have_text("live")

    await ingest(3, 0)
    rows = page.locator("#events tr")
    await expect(rows).to_have_count(3)

    # SIGTERM: the stream ends with a shutdown notice; the browser retries until it is back.
    assert await asyncio.to_thread(interlink.stop) == 0
    await interlink.restart()
    await ingest(2, 3)  # appended before the page has reconnected: replayed on resume
    await expect(rows).to_have_count(5, timeout=30_000)
    await ingest(1, 5)  # and live again after the seam
    await expect(rows).to_have_count(6, timeout=30_000)
    await asyncio.sleep(0.5)  # a duplicate would have arrived by now
    positions = [int(text) for text in await page.locator("#events td.id").all_inner_texts()]
    assert positions == sorted(positions, reverse=True)  # newest first, in log order
    assert len(positions) == len(set(positions)) == 6, positions
    assert browser.blocked == [], browser.blocked
    assert errors == [], errors
