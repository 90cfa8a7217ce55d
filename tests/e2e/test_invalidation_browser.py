"""A lead's journey, its last leg, in a real browser: annotators work through the API, the lead
sees the agreement on the dashboard, invalidates a spammer in the admin, sees the agreement
change, and exports the batch from its admin page."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from apps.batches.models import Batch, Comparison
from apps.dashboard import services
from apps.dashboard.services import dashboards_refresh
from apps.judging.models import Judgment
from apps.projects.models import Project
from apps.projects.services import membership_add
from tests.conftest import prompt_line
from tests.dashboard.test_dashboard import age_figures
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import fill_login
from tests.e2e.test_dashboard_browser import api_post

pytestmark = pytest.mark.django_db(transaction=True)


def vote_for(base: str, user: User, option: str) -> None:
    """Judge everything the queue gives `user` through the API, for candidate `option`."""
    while True:
        status, lease = api_post(base, user, "/api/v1/projects/demo/assignments/next/")
        if status == 204:
            return
        comparison = Comparison.objects.get(pk=lease["comparison"])
        wanted = getattr(comparison, f"candidate_{option}").external_id
        side = "left" if lease["left"]["id"] == wanted else "right"
        status, _ = api_post(
            base, user, f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": side}
        )
        assert status == 201


def agreement_row(page: Any) -> str:
    return page.locator("[data-testid=agreement] tr.total").inner_text()


def refresh_figures(project: Project) -> None:
    """The beat job's run, with the cached figures (if any) old enough to be recomputed."""
    if cache.get(services._key(project.pk)) is not None:
        age_figures(project, 60)
    dashboards_refresh()


def test_a_lead_invalidates_a_spammer_sees_agreement_recover_and_exports(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    annotators: list[User],
    make_user: Any,
    import_rows: Any,
) -> None:
    cache.clear()
    Project.objects.filter(pk=project.pk).update(overlap=4)
    spammer = make_user("spam")
    membership_add(project=project, user=spammer, role="annotator")
    import_rows(prompt_line("p-1"), prompt_line("p-2"))
    base = live_server.url
    vote_for(base, spammer, "b")
    for user in annotators:
        vote_for(base, user, "a")
    # Four votes a comparison, three agree: 3 agreeing pairs of 6.
    refresh_figures(project)

    page.goto(f"{base}/admin/login/?next=/lead/p/demo/")
    fill_login(page, "bob")
    assert page.url.endswith("/lead/p/demo/"), page.url
    assert "50.0%" in agreement_row(page)

    # The admin: invalidate the spammer, with a preview first.
    page.goto(f"{base}/admin/judging/judgment/")
    page.get_by_role("link", name="Invalidate an annotator's judgments").click()
    page.select_option("#id_project", str(project.pk))
    page.fill("#id_annotator", "spam")
    page.fill("#id_reason", "Chose B on every item in under a second")
    page.get_by_role("button", name="Preview").click()
    assert "This invalidates 2 judgments on 2 comparisons" in page.inner_text("#invalidate-preview")
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()
    page.get_by_role("button", name="Invalidate 2 judgments").click()
    assert "2 judgments invalidated" in page.inner_text("ul.messagelist")
    assert Judgment.objects.filter(annotator=spammer, invalidated_at__isnull=False).count() == 2
    assert not Comparison.objects.filter(complete=True).exists()  # reopened for a fourth vote

    # The audit log records it.
    page.goto(f"{base}/admin/audit/auditevent/")
    assert "Judgments invalidated" in page.inner_text("#result_list")

    # The dashboard, once its figures are recomputed: every counted vote agrees.
    refresh_figures(project)
    page.goto(f"{base}/lead/p/demo/")
    assert "100.0%" in agreement_row(page)

    # Export the batch from its admin page: the spammer's votes are not in it.
    batch = Batch.objects.get()
    page.goto(f"{base}/admin/batches/batch/{batch.pk}/change/")
    link = page.locator("#batch-exports a", has_text="trl").first
    response = page.request.get(base + link.get_attribute("href"))
    assert response.status == 200
    rows = [json.loads(line) for line in response.text().splitlines()]
    assert [(r["agreement"], r["n_annotators"]) for r in rows] == [(1.0, 3), (1.0, 3)]
    page_log.assert_clean(base)
