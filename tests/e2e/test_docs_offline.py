"""``/docs`` renders its operations in a browser that cannot reach the internet."""

from __future__ import annotations

import pytest

from .browser import OfflineBrowser
from .conftest import InterlinkProcess

pytestmark = pytest.mark.e2e


async def test_docs_render_every_operation_offline(
    interlink: InterlinkProcess, browser: OfflineBrowser
) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = await page.goto(f"{interlink.base_url}/docs", wait_until="load")
    assert response is not None and response.status == 200
    await page.wait_for_selector(".opblock", timeout=30_000)
    shown = await page.locator(".opblock-summary-path").all_inner_texts()
    assert any(path.strip().startswith("/api/v1/tenants") for path in shown), shown
    assert len(shown) >= 20, shown  # every operation, not one that happened to load
    assert await page.locator(".swagger-ui .info .title").inner_text() != ""
    # Nothing was asked of the internet (an aborted request would have failed the render, or
    # degraded it silently: a font, an icon).
    assert browser.blocked == [], browser.blocked
    assert errors == [], errors
