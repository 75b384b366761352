"""Debian's chromium, driven by Playwright (no browser download: ``executable_path``).

``make chromium`` (part of ``make test``'s set-up) installs it with apt where missing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
#: Screenshots the browser tests take (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
#: Without the background-networking flags chromium keeps dialling out on a closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """The system chromium; AssertionError saying how to install it when missing."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    assert found, "chromium is missing: `make chromium` (apt-get install -y chromium)"
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium for one test."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(),
                                                   headless=True, args=ARGS,
                                                   timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()
