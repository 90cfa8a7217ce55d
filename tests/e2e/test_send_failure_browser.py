"""A judgment that does not reach the server is kept and sent again, and stored once.

Run with SCREENSHOTS=1 to refresh docs/annotate-resend.png.
"""

import os
from collections.abc import Callable
from typing import Any

import pytest

from apps.batches.models import Batch
from apps.judging.models import Judgment
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.helpers import DOCS, WAIT_MS, current_assignment, log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_judgment_that_did_not_arrive_is_sent_again_and_stored_once(
    live_server: Any,
    page: Any,
    tmp_path: Any,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(prompt_line("p-1", n=3))
    base = live_server.url
    log_in(page, base, "ann")
    posts: list[str] = []

    def cut_the_first_two(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        posts.append(route.request.url)
        if len(posts) <= 2:
            route.abort("connectionrefused")  # as a network gone mid-judgment does
        else:
            route.continue_()

    page.route("**/p/demo/a/*/", cut_the_first_two)
    page.clock.install()  # the page's retry timer runs on Playwright's clock: jumped, not waited
    page.goto(f"{base}/p/demo/")
    before = current_assignment(page)
    page.keyboard.press("2")

    alert = page.locator("section#comparison .send-error[role=alert]")
    alert.wait_for(timeout=WAIT_MS)
    assert "did not reach the server" in alert.inner_text()
    assert "sent again in 2 s" in alert.inner_text()
    # The automatic retry after 2 s fails too: the wait doubles.
    assert len(posts) == 1
    page.clock.fast_forward(2_000)
    page.wait_for_function(
        "() => document.querySelector('.send-error p').textContent.includes('in 4 s')",
        timeout=WAIT_MS,
    )
    assert len(posts) == 2
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(target / "annotate-resend.png"))
    assert not Judgment.objects.filter(annotator__username="ann").exists()

    page.get_by_role("button", name="Send now").click()
    page.wait_for_function(
        """before => {
            const section = document.querySelector('section#comparison');
            return section.dataset.assignment && section.dataset.assignment !== before
                && section.getAttribute('aria-busy') !== 'true';
        }""",
        arg=before,
        timeout=WAIT_MS,
    )
    assert page.locator(".send-error").count() == 0
    assert len(posts) == 3
    assert list(
        Judgment.objects.filter(annotator__username="ann").values_list("choice", flat=True)
    ) == ["right"]
    # Nothing is left to send: a reload sends no fourth request.
    page.reload()
    page.wait_for_load_state("networkidle")  # a fourth request would be on the wire by then
    assert len(posts) == 3
