"""Browser tests: a real Chromium (Debian's package) driven by Playwright's sync API.

Playwright never downloads a browser here: the tests use CHROMIUM_PATH, /usr/bin/chromium or
the `chromium` on PATH, and skip when there is none. Every page records what a reviewer wants
to know about: dialogs (dismissed), console errors, page errors and every request URL.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.helpers import DEFAULT_TIMEOUT_MS

# Playwright's sync API runs an event loop in this thread, which trips Django's async-safety
# check on every ORM call made by the test itself (fixtures, assertions).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

HERE = Path(__file__).resolve().parent
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def chromium_path() -> str | None:
    candidates = [
        os.environ.get("CHROMIUM_PATH", ""),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What the pages of one test did, for assertions."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests to any origin but `origin` (data:, blob: and about: stay in the page)."""
        own = urlsplit(origin)
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in {"data", "blob", "about"}:
                continue
            if (parts.scheme, parts.netloc) != (own.scheme, own.netloc):
                foreign.append(url)
        return foreign

    def real_console_errors(self) -> list[str]:
        """Console errors, but for the browser's own /favicon.ico probe (the app has none)."""
        return [error for error in self.console_errors if "/favicon.ico)" not in error]

    def assert_clean(self, origin: str) -> None:
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert self.page_errors == [], f"page errors: {self.page_errors}"
        assert self.real_console_errors() == [], f"console errors: {self.console_errors}"
        assert self.foreign_requests(origin) == [], "requests left for another origin"


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def make_page(browser: Any, page_log: PageLog) -> Iterator[Callable[..., Any]]:
    """new_page(**context_options): a page in a fresh context that records into page_log."""
    contexts: list[Any] = []

    def new_page(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        contexts.append(context)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        context.set_default_navigation_timeout(3 * DEFAULT_TIMEOUT_MS)
        context.on("request", lambda request: page_log.requests.append(request.url))

        def on_dialog(dialog: Any) -> None:
            page_log.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message: Any) -> None:
            if message.type == "error":
                page_log.console_errors.append(f"{message.text} ({message.location.get('url')})")

        # Context-wide, so that a popup or a second page is recorded too.
        context.on("dialog", on_dialog)
        context.on("console", on_console)
        context.on("weberror", lambda web_error: page_log.page_errors.append(str(web_error.error)))
        page = context.new_page()
        return page

    yield new_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(make_page: Callable[..., Any]) -> Any:
    return make_page()
