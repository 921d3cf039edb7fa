"""Headless Chromium with the network cut off: only loopback answers.

The browser is Debian's ``/usr/bin/chromium`` (``bash scripts/chromium.sh``), driven by the
Python ``playwright`` package; Playwright's own browser download is not used. Without chromium
the browser tests skip, unless ``CI=true``, where a missing browser is a failure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Route, async_playwright
from tests.conftest import service_unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class OfflineBrowser:
    """Pages whose requests outside loopback are aborted and listed in ``blocked``."""

    context: BrowserContext
    blocked: list[str] = field(default_factory=list)

    async def new_page(self) -> Page:
        return await self.context.new_page()


def require_chromium() -> None:
    if not CHROMIUM.exists():
        service_unavailable(f"{CHROMIUM} is missing: bash scripts/chromium.sh")


async def offline_browser() -> AsyncIterator[OfflineBrowser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()
            offline = OfflineBrowser(context)

            async def only_loopback(route: Route) -> None:
                url = route.request.url
                if _loopback(url):
                    await route.continue_()
                else:
                    offline.blocked.append(url)
                    await route.abort("internetdisconnected")

            await context.route("**/*", only_loopback)
            yield offline
        finally:
            await browser.close()
