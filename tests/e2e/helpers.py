"""What the browser tests share: logging in, the judging card, project settings, CSP and waits.

The browser itself and the page log are conftest.py's fixtures; these are plain functions, so a
test module imports what it uses from here rather than from another test module.
"""

import time
from pathlib import Path
from typing import Any

from apps.projects.models import Project

PASSWORD = "pw-for-tests"
WAIT_MS = 5_000
DEFAULT_TIMEOUT_MS = 10_000
DOCS = Path(__file__).resolve().parents[2] / "docs"


def log_in(page: Any, base_url: str, username: str) -> None:
    """Logs in through the form, typing like a person: username, Tab, password, Enter."""
    page.goto(f"{base_url}/accounts/login/")
    assert page.evaluate("document.activeElement.id") == "id_username"  # autofocus
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base_url}/", f"login did not land on the home page: {page.url}"


def fill_login(page: Any, username: str, password: str = PASSWORD) -> None:
    """Fills the login form already on the page and sends it, waiting for where it leads."""
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def admin_log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.url == f"{base}/admin/", page.url


def configure(project: Project, **settings: Any) -> None:
    for name, value in settings.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()


def open_project(page: Any, base: str) -> None:
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    assert current_assignment(page)


def current_assignment(page: Any) -> str | None:
    return page.get_attribute("section#comparison", "data-assignment")


def press_and_wait_for_swap(page: Any, key: str) -> str | None:
    """Presses `key` and waits until htmx has swapped in another comparison (or the end)."""
    before = current_assignment(page)
    assert before, "no comparison on the page to judge"
    page.keyboard.press(key)
    page.wait_for_function(
        """before => {
            const section = document.querySelector("section#comparison");
            return section !== null && section.dataset.assignment !== before
                && section.getAttribute("aria-busy") !== "true"
                && document.querySelector(".htmx-request, .htmx-swapping") === null;
        }""",
        arg=before,
        timeout=WAIT_MS,
    )
    return current_assignment(page)


def next_frames(page: Any, frames: int = 2) -> None:
    """Waits for the page to paint `frames` times: its own work after an event (a scroll on
    arrival, a message shown) is done by then, however slow the machine."""
    page.evaluate(
        """frames => new Promise(resolve => {
            const step = left => left ? requestAnimationFrame(() => step(left - 1)) : resolve();
            step(frames);
        })""",
        frames,
    )


def wait_for_held(page: Any, held: list[Any], count: int = 1) -> None:
    """Wait until `count` requests are held by a route handler.

    Playwright's sync API runs route handlers only while it is in one of its own calls, so a
    request the page has sent may not have reached the handler yet when a DOM condition holds:
    keep Playwright's loop turning (wait_for_timeout) until it has; a deadline, not a fixed wait.
    """
    deadline = time.monotonic() + DEFAULT_TIMEOUT_MS / 1000
    while len(held) < count:
        assert time.monotonic() < deadline, f"{len(held)} of {count} requests held"
        page.wait_for_timeout(20)


def send_probe(page: Any, path: str) -> None:
    """Sends a GET to `path` from the page, after whatever the page has sent so far.

    A test that must show that no request was sent holds the page's requests (page.route) and
    waits for this probe to be held: a request sent before it is held before it.
    """
    page.evaluate("path => { fetch(path).catch(() => {}); }", path)


# Every CSP violation of a page, as the page itself hears of them (the console says it too).
RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__csp.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""


def record_csp(page: Any) -> None:
    """From the next page loaded on, keeps the page's CSP violations for csp_violations()."""
    page.add_init_script(RECORD_CSP)


def csp_violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__csp || []"))
