"""A lead's first steps in a real browser: home, the dashboard, an API token made, used against
the live API, revoked and refused. And the home pages pictured in the README.

Run with SCREENSHOTS=1 to refresh docs/home.png (an annotator's) and docs/home-lead.png.
"""

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.models import Batch
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import log_in

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCREEN = {"width": 1366, "height": 768}


def api_get(base_url: str, key: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the live server's own http URL
        f"{base_url}{path}", headers={"Authorization": f"Token {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_lead_goes_from_home_to_the_dashboard_and_uses_a_token(
    live_server: Any,
    make_page: Callable[..., Any],
    page_log: PageLog,
    project: Project,
    batch: Batch,
) -> None:
    base = live_server.url
    page = make_page(viewport=SCREEN)
    log_in(page, base, "bob")

    lead_row = page.locator('[data-testid=managed] tr[data-project="demo"]')
    assert "Demo" in lead_row.inner_text()
    with page.expect_navigation():
        lead_row.locator("a[data-link=dashboard]").click()
    assert page.url == f"{base}/lead/p/demo/"
    assert "dashboard" in page.locator("h1").inner_text()
    page_log.assert_clean(base)

    page.goto(f"{base}/")
    with page.expect_navigation():
        page.get_by_role("link", name="Your API token").click()
    assert page.url == f"{base}/accounts/api-token/"
    assert page.inner_text("[data-testid=token-status]") == "You have no API token."
    with page.expect_navigation():
        page.get_by_role("button", name="Create a token").click()
    key = page.inner_text("[data-testid=token-key]").strip()
    assert re.fullmatch(r"[0-9a-f]{40}", key), key

    status, body = api_get(base, key, "/api/v1/projects/")
    assert status == 200, body
    assert [p["slug"] for p in body] == ["demo"]

    # Shown once: loaded again, the page says a token exists, not what it is.
    page.goto(f"{base}/accounts/api-token/")
    assert key not in page.content()
    assert page.inner_text("[data-testid=token-status]").endswith(key[:4] + "•" * 36)

    with page.expect_navigation():
        page.get_by_role("button", name="Revoke it").click()
    assert "revoked" in page.inner_text("[data-testid=token-notice]")
    status, body = api_get(base, key, "/api/v1/projects/")
    assert status == 401, body
    page_log.assert_clean(base)


def judge(project: Project, user: User, times: int) -> None:
    for _ in range(times):
        lease = assignment_next(project=project, annotator=user)
        assert lease is not None
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")


def test_it_takes_the_home_screenshots_for_the_docs(
    tmp_path: Any,
    live_server: Any,
    make_page: Callable[..., Any],
    page_log: PageLog,
    project: Project,
    alice: User,
    bob: User,
    annotators: list[User],
    import_rows: Callable[..., Batch],
) -> None:
    ann, ben, cat = annotators
    project.name = "Python answers, round 1"
    project.save(update_fields=["name"])
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 27)))  # 78 comparisons
    judge(project, ann, 77)
    judge(project, ben, 78)
    judge(project, cat, 50)
    second = project_create(slug="support", name="Support replies", created_by=alice)
    membership_add(project=second, user=bob, role="lead")
    membership_add(project=second, user=ann, role="annotator")
    import_rows(*(prompt_line(f"s-{i}", n=2) for i in range(1, 13)), target=second)

    # docs/ is rewritten only on request (SCREENSHOTS=1), never by an ordinary run.
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    base = live_server.url

    page = make_page(viewport=SCREEN)
    log_in(page, base, "ann")
    demo = page.locator('[data-testid=judging] tr[data-project="demo"]')
    assert demo.locator("[data-figure=mine]").inner_text() == "77"
    assert demo.locator("[data-figure=left]").inner_text() == "1"
    assert demo.get_by_role("link", name="Continue judging").count() == 1
    support = page.locator('[data-testid=judging] tr[data-project="support"]')
    assert support.get_by_role("link", name="Start judging").count() == 1
    page.screenshot(path=str(target / "home.png"))

    page = make_page(viewport=SCREEN)
    log_in(page, base, "bob")
    assert page.locator("[data-testid=managed] tr").count() == 3  # the header and two projects
    page.screenshot(path=str(target / "home-lead.png"))
    assert (target / "home-lead.png").stat().st_size > 10_000
    page_log.assert_clean(base)
