"""A lead's journey through the admin in a real browser: create a project with a previewed
guideline, upload a bad file and read its line errors, upload a good one and watch the progress
bar until the import ends, then pause the batch."""

import os
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from apps.audit.models import AuditEvent
from apps.batches.models import Batch
from apps.batches.tasks import batch_import_task
from apps.projects.models import GuidelineVersion, Project
from tests.conftest import jsonl, prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import DOCS, admin_log_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unconsumed_queue(settings: Any) -> Any:
    """Background imports are sent to a queue no worker reads, so that the import waits until
    the test runs the task itself, as the worker would: the page can be watched meanwhile."""
    import uuid

    from annotate.celery import app

    queue = f"annotate-e2e-{uuid.uuid4().hex[:12]}"
    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager, app.conf.task_default_queue = False, queue
    try:
        yield queue
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue = saved
        if django_settings.REDIS_URL:
            import redis

            client = redis.Redis.from_url(django_settings.REDIS_URL)
            client.delete(queue, f"_kombu.binding.{queue}")
            client.close()


def test_a_leads_journey_in_the_admin(
    tmp_path: Any,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    bob: User,
    project: Project,
    settings: Any,
    unconsumed_queue: str,
) -> None:
    base = live_server.url
    # The admin's pages load more scripts and styles than ours, on a machine that may be busy.
    page.set_default_navigation_timeout(30_000)
    page.set_default_timeout(15_000)
    admin_log_in(page, base, "bob")

    # A new project, its guidelines previewed as they are typed.
    page.goto(f"{base}/admin/projects/project/add/")
    page.locator("#id_name").press_sequentially("Journey")
    assert page.input_value("#id_slug") == "journey"  # filled in from the name, as typed
    page.fill("#id_skip_reasons", "Unclear\nOff topic")
    page.click("#id_guidelines")
    page.keyboard.type("Prefer **correct** answers.\n\n<script>x</script>")
    page.locator("#guidelines-preview strong", has_text="correct").wait_for()
    assert "&lt;script&gt;" in page.inner_html("#guidelines-preview")
    with page.expect_navigation():
        page.click("input[name=_save]")
    assert "was added successfully" in page.inner_text(".messagelist")
    journey = Project.objects.get(slug="journey")
    assert journey.skip_reasons == ["Unclear", "Off topic"]
    assert GuidelineVersion.objects.get(project=journey).text.startswith("Prefer **correct**")

    # A bad file: every error with its line, nothing stored.
    page.goto(f"{base}/admin/batches/batch/upload/")
    page.select_option("#id_project", label="Journey")
    bad = jsonl(prompt_line("a"), "{oops", prompt_line("b", n=1))
    page.set_input_files(
        "#id_file", {"name": "bad.jsonl", "mimeType": "application/jsonl", "buffer": bad}
    )
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert "Nothing was stored" in page.inner_text(".errornote")
    rows = page.locator("#import-errors tbody tr").all_inner_texts()
    assert [row.split("\t")[0] for row in rows] == ["2", "3"]
    assert "invalid JSON" in rows[0] and "at least 2 responses" in rows[1]
    assert not Batch.objects.filter(project=journey).exists()

    # A good file, large enough to go to the background: the bar shows, then the page reloads.
    settings.IMPORT_BACKGROUND_BYTES = 100
    good = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(50)))
    page.select_option("#id_project", label="Journey")
    page.set_input_files(
        "#id_file", {"name": "good.jsonl", "mimeType": "application/jsonl", "buffer": good}
    )
    with page.expect_navigation():
        page.click("input[type=submit]")
    batch = Batch.objects.get(project=journey)
    assert page.url == f"{base}/admin/batches/batch/{batch.pk}/change/"
    bar = page.locator("#import-progress progress")
    bar.wait_for()
    assert "waiting for a worker (50 lines)" in page.inner_text("#import-progress")
    # The worker's part, run here.
    assert batch_import_task(batch.pk) == "active"
    # The fragment polls every second; once the import ends it has the page reloaded.
    page.locator("#batch-panel h2", has_text=f"Batch {batch.pk}: active").wait_for(timeout=10_000)
    assert page.locator("#import-progress").count() == 0
    assert page.inner_text(".field-comparison_count .readonly") == "150"
    assert "Export this batch" in page.inner_text("#batch-exports")
    # docs/ is rewritten only on request (SCREENSHOTS=1), never by an ordinary run.
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(target / "admin-batch.png"), full_page=False)

    # Pause it from its page; the log has the whole story.
    with page.expect_navigation():
        page.click("#batch-actions button[value=pause]")
    assert "is now paused" in page.inner_text(".messagelist")
    batch.refresh_from_db()
    assert batch.status == "paused"
    events = AuditEvent.objects.filter(project=journey).order_by("id")
    actions = list(events.values_list("action", flat=True))
    assert actions == [
        "project_created",
        "membership_added",  # the lead who creates a project leads it
        "import_failed",
        "import_started",
        "import_finished",
        "batch_status",
    ]
    page_log.assert_clean(base)
