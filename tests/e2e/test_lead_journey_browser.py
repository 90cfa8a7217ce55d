"""A project lead's whole day in a real browser, in one test, from the home page: the dashboard,
a batch uploaded through the admin's form, a background export started, watched and downloaded,
an API token made, used against the live API and revoked. Only the annotators' judgments and the
worker's part of the export are done outside the browser, as they are in production."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from apps.batches.models import Batch, BatchStatus
from apps.exports.jobs import export_job_run
from apps.exports.models import ExportJob, ExportStatus
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from tests.conftest import jsonl, prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import log_in
from tests.e2e.test_admin_browser import unconsumed_queue  # noqa: F401
from tests.e2e.test_home_browser import SCREEN, api_get

pytestmark = pytest.mark.django_db(transaction=True)


def go_home(page: Any, base: str) -> Any:
    """Back to the home page, as a person would type it; returns the row of the project."""
    page.goto(f"{base}/")
    return page.locator('[data-testid=managed] tr[data-project="demo"]')


def test_a_leads_day_from_the_home_page(
    tmp_path: Any,
    live_server: Any,
    make_page: Any,
    page_log: PageLog,
    project: Project,
    batch: Batch,
    annotators: list[User],
    settings: Any,
    unconsumed_queue: str,  # noqa: F811
) -> None:
    settings.EXPORT_ROOT = tmp_path / "exports"
    cache.clear()  # no figures left from another test in the dashboard's cache
    base = live_server.url
    page = make_page(viewport=SCREEN, accept_downloads=True)
    # The admin's pages load more scripts and styles than ours, on a machine that may be busy.
    page.set_default_navigation_timeout(30_000)
    page.set_default_timeout(15_000)

    # 1. Logged in, the lead lands on the home page, which lists the project with its links.
    log_in(page, base, "bob")
    row = page.locator('[data-testid=managed] tr[data-project="demo"]')
    assert "Demo" in row.inner_text()
    for link in ("dashboard", "batches", "export", "settings"):
        assert row.locator(f"a[data-link={link}]").count() == 1, link

    # 2. The dashboard: the fixture's batch, nothing judged yet.
    with page.expect_navigation():
        row.locator("a[data-link=dashboard]").click()
    assert page.url == f"{base}/lead/p/demo/"
    assert page.title().startswith("Dashboard")
    assert page.inner_text("[data-testid=total-comparisons]") == "15"
    assert page.inner_text("[data-testid=total-judgments]") == "0"

    # 3. Batches: the project's list in the admin, then its upload form.
    row = go_home(page, base)
    with page.expect_navigation():
        row.locator("a[data-link=batches]").click()
    assert page.url == f"{base}/admin/batches/batch/?project__id__exact={project.pk}"
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_navigation():
        page.click(
            ".object-tools a.addlink"
        )  # "Add batch" opens the upload form (not the sidebar's)
    assert page.url == f"{base}/admin/batches/batch/upload/"
    upload = tmp_path / "day-2.jsonl"
    upload.write_bytes(jsonl(prompt_line("d-1", n=3), prompt_line("d-2", n=2)))
    page.select_option("#id_project", label="Demo")
    page.set_input_files("#id_file", str(upload))
    with page.expect_navigation():
        page.click("input[type=submit]")
    new = Batch.objects.exclude(pk=batch.pk).get(project=project)
    assert page.url == f"{base}/admin/batches/batch/{new.pk}/change/"
    assert "Imported" in page.inner_text(".messagelist")
    assert new.status == BatchStatus.ACTIVE and new.comparison_count == 4
    assert new.name == "day-2.jsonl"
    # The list shows the new batch, active.
    page.goto(f"{base}/admin/batches/batch/?project__id__exact={project.pk}")
    assert page.locator("#result_list tbody tr").count() == 2
    new_row = page.locator("#result_list tbody tr", has_text="day-2.jsonl")
    assert new_row.locator("td.field-status").inner_text() == "Active"
    assert new_row.locator("td.field-comparison_count").inner_text() == "4"

    # 4. The annotators judge everything (19 comparisons, three votes each).
    for user in annotators:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert Judgment.objects.filter(assignment__comparison__batch__project=project).count() == 57

    # The lead starts a background export from the admin's export jobs.
    page.goto(f"{base}/admin/")
    with page.expect_navigation():
        page.get_by_role("link", name="Export jobs").first.click()
    assert page.url == f"{base}/admin/exports/exportjob/"
    with page.expect_navigation():
        page.click("#export-start")
    page.select_option("#id_format", "judgments")
    with page.expect_navigation():
        page.click("#export-job-form input[type=submit]")
    job = ExportJob.objects.get()
    assert page.url == f"{base}/admin/exports/exportjob/{job.pk}/change/"
    assert page.inner_text('[data-testid="export-status"]') == "queued"
    export_job_run(job.pk)  # the worker's part
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    # The job's page reloads itself while the job is queued, and then shows it done.
    page.locator('[data-testid="export-status"]', has_text="done").wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as info:
        page.click("#export-files a:text-is('jsonl')")
    download = info.value
    assert download.suggested_filename == f"demo-judgments-{job.pk}.jsonl"
    text = Path(download.path()).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line]
    assert len(rows) == 57 == job.rows_written  # one row per vote
    prompts = {row["prompt_id"] for row in rows}
    assert prompts == {"p-1", "p-2", "p-3", "p-4", "p-5", "d-1", "d-2"}

    # 5. An API token, from home: made, read once, used, revoked.
    go_home(page, base)
    with page.expect_navigation():
        page.get_by_role("link", name="Your API token").click()
    assert page.url == f"{base}/accounts/api-token/"
    with page.expect_navigation():
        page.get_by_role("button", name="Create a token").click()
    key = page.inner_text("[data-testid=token-key]").strip()
    assert re.fullmatch(r"[0-9a-f]{40}", key), key
    status, body = api_get(base, key, "/api/v1/projects/")
    assert status == 200, body
    assert [(p["slug"], p["scheme"]) for p in body] == [("demo", project.scheme)]
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke it").click()
    assert "revoked" in page.inner_text("[data-testid=token-notice]")
    status, body = api_get(base, key, "/api/v1/projects/")
    assert status == 401, body

    # 6. No page of the day logged an error.
    page_log.assert_clean(base)
