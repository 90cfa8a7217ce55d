"""A lead starts a background export in the admin, watches it finish and downloads the file,
in a real browser. The job goes to a queue no worker reads; the test runs it as the worker
would, and the job's page (which reloads itself while the job runs) shows it done."""

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.exports.jobs import export_job_run
from apps.exports.models import ExportJob, ExportStatus
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import DOCS, admin_log_in
from tests.e2e.test_admin_browser import unconsumed_queue  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lead_starts_watches_and_downloads_a_background_export(
    tmp_path: Any,
    live_server: Any,
    make_page: Any,
    page_log: PageLog,
    bob: User,
    project: Project,
    annotators: list[User],
    import_rows: Any,
    settings: Any,
    unconsumed_queue: str,  # noqa: F811
) -> None:
    settings.EXPORT_ROOT = tmp_path / "exports"
    import_rows(prompt_line("p-1", n=3), prompt_line("p-2", n=3))
    for user in annotators:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    base = live_server.url
    page = make_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page.set_default_navigation_timeout(30_000)
    page.set_default_timeout(15_000)
    admin_log_in(page, base, "bob")
    shots = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path

    # From the list, "Start a background export": bob leads one project, so its form opens.
    page.goto(f"{base}/admin/exports/exportjob/")
    with page.expect_navigation():
        page.click("#export-start")
    options = page.locator("#id_format option").all_inner_texts()
    assert "trl" in options and "arena" in options and "listwise" not in options  # pairwise
    page.select_option("#id_format", "trl")
    page.select_option("#id_aggregate", "majority")
    page.select_option("#id_prompt_form", "text")
    page.screenshot(path=str(shots / "admin-export.png"), full_page=False)
    with page.expect_navigation():
        page.click("#export-job-form input[type=submit]")

    # Queued: the page says so and reloads itself until the job is done.
    job = ExportJob.objects.get()
    assert page.url == f"{base}/admin/exports/exportjob/{job.pk}/change/"
    assert page.inner_text('[data-testid="export-status"]') == "queued"
    assert page.locator("#export-refresh").count() == 1
    assert (job.format, job.parameters) == (
        "trl",
        {"aggregate": "majority", "prompt_form": "text"},
    )
    export_job_run(job.pk)  # the worker's part
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    page.locator('[data-testid="export-status"]', has_text="done").wait_for(timeout=15_000)
    page.screenshot(path=str(shots / "admin-export-done.png"), full_page=False)

    # The download link serves the file (through the API's permission check).
    with page.expect_download() as info:
        page.click("#export-files a:text-is('jsonl')")
    download = info.value
    assert download.suggested_filename == f"demo-trl-{job.pk}.jsonl"
    path = Path(download.path())
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    assert rows and len(rows) == job.rows_written
    assert all(isinstance(row["prompt"], str) for row in rows)  # prompt_form=text

    # The list shows it done, with its links.
    page.goto(f"{base}/admin/exports/exportjob/")
    assert page.locator(f'a[href="/api/v1/projects/demo/exports/{job.pk}/download/"]').count() == 1
    page_log.assert_clean(base)
