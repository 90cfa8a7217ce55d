"""The admin's lists and forms at the sizes people use (1366x768 laptops, 768 px tablets): every
column of the judgments list in view, wide tables scrolling in their own box instead of widening
the page, the invalidation form laid out as the admin's forms are, and the site's own icon.
The screenshots it takes (1366x768 and 768 px wide) go to pytest's temporary folder."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.models import Batch
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import admin_log_in

pytestmark = pytest.mark.django_db(transaction=True)

OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def box(page: Any, selector: str) -> dict[str, float]:
    return page.locator(selector).first.bounding_box()


@pytest.fixture
def two_weekly_batches(project: Project, import_rows: Any, annotators: list[User]) -> list[Batch]:
    """Two batches called "weekly", each of their comparisons judged once."""
    batches = [import_rows(prompt_line(f"weekly-{n}", n=3)) for n in (1, 2)]
    Batch.objects.filter(pk__in=[b.pk for b in batches]).update(name="weekly")
    while (lease := assignment_next(project=project, annotator=annotators[0])) is not None:
        judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    return batches


def test_the_admin_fits_a_laptop_and_a_tablet(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    bob: User,
    two_weekly_batches: list[Batch],
    tmp_path: Path,
) -> None:
    base = live_server.url
    shots = tmp_path
    page.set_default_navigation_timeout(30_000)
    page.set_default_timeout(15_000)
    page.set_viewport_size({"width": 1366, "height": 768})
    admin_log_in(page, base, "bob")

    # The judgments list: each row names its comparison's prompt, and every column is in view
    # beside the filters (the counted column used to be cut off).
    page.goto(f"{base}/admin/judging/judgment/")
    assert page.evaluate(OVERFLOW) <= 0
    results = box(page, "#changelist-form .results")
    for header in page.locator("#result_list thead th").all():
        edge = header.bounding_box()
        assert edge["x"] + edge["width"] <= results["x"] + results["width"] + 1, header.inner_text()
    assert page.locator("#result_list td.field-comparison_and_prompt", has_text="(weekly-").count()
    # The batch filter tells the two batches called "weekly" apart.
    for batch in two_weekly_batches:
        assert page.locator("#changelist-filter a", has_text=f"weekly (#{batch.pk}, ").count() == 1
    page.screenshot(path=str(shots / "admin-judgments.png"))

    # The site's icon, from its own static files: no request for /favicon.ico.
    icons = [url for url in page_log.requests if url.endswith("/static/img/favicon.svg")]
    assert icons, "the admin does not load its icon"
    response = page.request.get(icons[0])
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert not [url for url in page_log.requests if url.endswith("/favicon.ico")]

    # The invalidation form, laid out as the admin's forms: each label beside its field, and
    # "Since" saying its time zone.
    page.goto(f"{base}/admin/judging/judgment/invalidate/")
    label, field = box(page, "label[for=id_since]"), box(page, "#id_since")
    assert page.inner_text("label[for=id_since]") == "Since (UTC):"
    assert label["x"] + label["width"] <= field["x"]
    assert abs(label["y"] - field["y"]) < field["height"]

    # A tablet, the sidebar open: the batches list keeps its width and scrolls in its own box;
    # the page itself does not scroll sideways.
    page.set_viewport_size({"width": 768, "height": 768})
    page.goto(f"{base}/admin/batches/batch/")
    assert page.evaluate(OVERFLOW) <= 0
    results = page.locator("#changelist-form .results")
    width, scroll = results.evaluate("(e) => [e.clientWidth, e.scrollWidth]")
    assert width >= box(page, "#content-main")["width"] - 1  # the filters went below it
    assert scroll > width  # the table scrolls within its box
    assert box(page, "#changelist-filter")["y"] > box(page, "#result_list")["y"]
    page.screenshot(path=str(shots / "admin-batches-768.png"))

    # The one-time links of new accounts: long addresses wrap, the page keeps its width.
    page.goto(f"{base}/admin/accounts/annotatoraccount/create/")
    page.fill(
        "#id_emails",
        "short@example.org\nan.annotator.with.a.rather.long.address@annotation-vendor.example.org",
    )
    page.locator("input[name=projects]").first.check()
    with page.expect_navigation():
        page.click("input[type=submit]")
    page.locator("#account-links").wait_for()
    assert page.evaluate(OVERFLOW) <= 0
    page.screenshot(path=str(shots / "admin-links-768.png"))
    page_log.assert_clean(base)
