"""Headless Chromium for the dashboard's browser test and screenshots: Debian's ``chromium`` package driven
by Playwright (no browser download: Playwright launches the system executable)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = (
    "as root, `apt-get update && apt-get install -y chromium` (scripts/check.sh does it) and "
    "`pip install -e '.[dev]'` for Playwright"
)


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def missing_reason() -> str | None:
    """Why no browser can run here, or ``None`` when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright is not installed: {INSTALL_HINT}"
    if find_chromium() is None:
        return f"no chromium executable on PATH: {INSTALL_HINT}"
    return None


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A fresh headless page (Playwright ``Page``); the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    assert executable is not None, missing_reason()
    # Chromium's sandbox needs user namespaces, which containers running as root rarely allow.
    arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=arguments)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
