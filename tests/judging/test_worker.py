"""Background work through a REAL Celery worker process, on PostgreSQL and Redis.

The worker is a subprocess that consumes a queue of its own (CELERY_QUEUE), so that no other
worker on the same Redis takes these tasks, and uses the test database that pytest-django created.
The data must be committed to be seen by the worker: hence transactional tests.
"""

import io
import time
from datetime import timedelta
from typing import Any

import pytest
from celery.result import EagerResult
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from apps.batches.models import Batch, BatchSource, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.services import batch_import
from apps.judging.models import AssignmentStatus, Rendering
from apps.judging.queue import assignment_next
from apps.judging.rendering import text_digest
from apps.judging.tasks import leases_reclaim_expired_task
from apps.projects.services import membership_add
from tests.conftest import api_client_for, jsonl, prompt_line
from tests.workers import Worker, lead_and_project

DONE_TIMEOUT = 60

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]


def batch_when_done(client: Any, batch_id: int, worker: Worker) -> dict[str, Any]:
    """Polls the API until the batch is no longer importing (bounded)."""
    deadline = time.monotonic() + DONE_TIMEOUT
    while True:
        response = client.get(f"/api/v1/batches/{batch_id}/")
        assert response.status_code == 200, response.content
        body: dict[str, Any] = response.json()
        if body["status"] != BatchStatus.IMPORTING:
            return body
        worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} still importing after {DONE_TIMEOUT} s: {body}")
        time.sleep(0.25)


def post_in_background(client: Any, slug: str, data: bytes, settings: Any) -> dict[str, Any]:
    settings.IMPORT_BACKGROUND_BYTES = 1024
    assert len(data) > settings.IMPORT_BACKGROUND_BYTES
    response = client.post(
        f"/api/v1/projects/{slug}/batches/", data=data, content_type="application/jsonl"
    )
    assert response.status_code == 202, response.content
    body: dict[str, Any] = response.json()
    assert body["status"] == BatchStatus.IMPORTING
    assert body["prompts"] == 0
    return body


def test_it_imports_a_large_file_in_the_worker(via_worker: Worker, settings: Any) -> None:
    lead, project = lead_and_project("worker-import")
    client = api_client_for(lead)
    data = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(300)))

    created = post_in_background(client, project.slug, data, settings)
    batch = batch_when_done(client, created["id"], via_worker)

    assert batch["status"] == BatchStatus.ACTIVE, batch
    assert batch["prompts"] == 300
    assert batch["comparisons"] == 300 * 3  # three pairs of three candidates
    assert batch["errors"] == []
    assert Prompt.objects.filter(batch_id=batch["id"]).count() == 300
    assert Comparison.objects.filter(batch_id=batch["id"]).count() == 900
    assert not BatchSource.objects.filter(batch_id=batch["id"]).exists()
    # It was the worker, not this process, that imported it.
    via_worker.wait_for_log(f"batch {batch['id']} imported: 300 prompts, 900 comparisons")
    # Then the worker rendered every text of the batch, by the task the import sent on commit.
    texts = set(
        Candidate.objects.filter(prompt__batch_id=batch["id"]).values_list("text", flat=True)
    )
    texts |= {"What is 2 + 2?"}
    digests = {text_digest(text) for text in texts}
    deadline = time.monotonic() + 60
    while Rendering.objects.filter(digest__in=digests).count() < len(digests):
        via_worker.check_alive()
        assert time.monotonic() < deadline, "the worker did not render the batch's texts"
        time.sleep(0.2)
    via_worker.wait_for_log("apps.judging.tasks.render_batch_task")


def test_it_fails_a_bad_file_in_the_worker_with_line_numbers(
    via_worker: Worker, settings: Any
) -> None:
    lead, project = lead_and_project("worker-bad")
    client = api_client_for(lead)
    rows: list[Any] = [prompt_line(f"p-{i}", n=2) for i in range(300)]
    rows[2] = "{not json"
    rows[5] = {"id": "p-5", "prompt": "no candidates"}
    rows[199] = prompt_line("p-0", n=2)  # the id of line 1

    created = post_in_background(client, project.slug, jsonl(*rows), settings)
    batch = batch_when_done(client, created["id"], via_worker)

    assert batch["status"] == BatchStatus.FAILED, batch
    assert [error["line"] for error in batch["errors"]] == [3, 6, 200]
    assert "invalid JSON" in batch["errors"][0]["error"]
    assert "candidates" in batch["errors"][1]["error"]
    assert "duplicate prompt id 'p-0'" in batch["errors"][2]["error"]
    assert batch["prompts"] == 0
    assert not Prompt.objects.filter(project=project).exists()
    assert not Comparison.objects.filter(project=project).exists()
    assert not BatchSource.objects.filter(batch_id=batch["id"]).exists()
    assert Batch.objects.get(pk=batch["id"]).finished_at is not None


def test_it_reclaims_expired_leases_in_the_worker(via_worker: Worker) -> None:
    _lead, project = lead_and_project("worker-leases")
    annotator = User.objects.create_user("ann-worker", password="pw-for-tests")
    membership_add(project=project, user=annotator, role="annotator")
    data = jsonl(prompt_line("p-1", n=2), prompt_line("p-2", n=2))
    batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    assignment = assignment_next(
        project=project, annotator=annotator, now=timezone.now() - timedelta(hours=1)
    )
    assert assignment is not None
    assert assignment.expires_at < timezone.now()
    comparison = assignment.comparison
    comparison.refresh_from_db()
    assert comparison.lease_count == 1

    result = leases_reclaim_expired_task.delay()
    assert not isinstance(result, EagerResult)
    assert result.get(timeout=30) == 1

    assignment.refresh_from_db()
    comparison.refresh_from_db()
    assert assignment.status == AssignmentStatus.EXPIRED
    assert assignment.closed_at is not None
    assert comparison.lease_count == 0
    via_worker.wait_for_log(f"apps.judging.tasks.leases_reclaim_expired_task[{result.id}]")


def test_the_admin_shows_a_background_imports_progress_until_it_ends(
    via_worker: Worker, settings: Any, client: Any
) -> None:
    """The admin's progress fragment, polled as HTMX polls it, moves while the worker imports
    and asks the page to reload once the batch is active."""
    import re

    from django.core.files.uploadedfile import SimpleUploadedFile

    lead, project = lead_and_project("worker-progress")
    client.force_login(lead)
    settings.IMPORT_BACKGROUND_BYTES = 1024
    data = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(4000)))
    response = client.post(
        "/admin/batches/batch/upload/",
        {"project": project.pk, "name": "", "file": SimpleUploadedFile("big.jsonl", data)},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = Batch.objects.get(project=project)
    url = f"/admin/batches/batch/{batch.pk}/progress/"
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 3 * DONE_TIMEOUT
    while True:
        fragment = client.get(url, HTTP_HX_REQUEST="true")
        if fragment.get("HX-Refresh") == "true":
            break
        html = fragment.content.decode()
        percent = int(re.search(r'<progress max="100" value="(\d+)"', html).group(1))  # type: ignore[union-attr]
        phase = next(p for p in ("waiting", "checking", "storing") if p in html)
        seen.append((phase, percent))
        via_worker.check_alive()
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.05)
    batch.refresh_from_db()
    assert (batch.status, batch.prompt_count, batch.comparison_count) == ("active", 4000, 12_000)
    assert (batch.rows_done, batch.rows_total) == (4000, 4000)
    percents = [percent for _, percent in seen]
    assert percents == sorted(percents), seen
    assert any(0 < percent < 100 for percent in percents), seen
    assert {"checking", "storing"} & {phase for phase, _ in seen}, seen
    print(f"progress seen: {len(seen)} polls, phases {sorted({p for p, _ in seen})}")
