"""Headless Chromium (Debian's, through Playwright) for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def chromium_page(executable: str, args: list[str], timeout_ms: int = 30_000, **context) -> Iterator:
    """A fresh page in a browser of its own, closed after; the page's
    JavaScript errors fail the test. `context`: Playwright's new_context
    options (timezone_id, viewport, ...)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=args)
        page = browser.new_context(**context).new_page()
        page.set_default_timeout(timeout_ms)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
    assert not errors, f"JavaScript errors: {errors}"


def log_in_as_owner(page, base_url: str) -> None:
    """Log in to the console as the `owner` fixture's user (tests/conftest.py)."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-pass-123")
    page.click("#login-button")
    page.wait_for_url("**/domains/")
