"""Browser tests drive Debian's Chromium through Playwright (no browser download here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every run saves its screenshots under test-results/; `make screenshots` refreshes the README's
# (those named here) in docs/screenshots/ too.
SCREENSHOTS = ROOT / "test-results" / "screenshots"
README_SCREENSHOTS = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else None
IN_README = {
    *("seat-map", "retrying", "confirmed", "failed", "expired", "seat-taken", "flights", "order"),
    *("phone-order", "phone-seat-map-FL505", "order-FL606-phone", "confirmed-phone", "booking-link-desktop"),
    *("cabins", "confirmed-business"),
}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # A viewer in New York: departure times must show in their zone, not the server's UTC.
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 900},
        "timezone_id": "America/New_York",
        "locale": "en-US",
    }


@pytest.fixture
def new_context(browser, browser_context_args):
    """Another browser context (a second customer, a phone), with the same defaults as ``page``'s
    (Chromium applies one time zone to every context), closed when the test ends so that its page
    stops polling the live server."""
    contexts = []

    def make(**options):
        context = browser.new_context(**{**browser_context_args, **options})
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    def save(page, name: str, *, full_page: bool = True) -> None:
        for folder in (SCREENSHOTS, README_SCREENSHOTS if name in IN_README else None):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)

    return save
