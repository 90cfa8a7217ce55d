"""Background exports in REAL Celery worker processes, on PostgreSQL and Redis: progress while
running, and a worker killed (SIGKILL) mid-export whose job is re-run or failed, never left
running. Each worker consumes a queue of its own (tests/workers.py starts them).

The export is slowed by the test hook EXPORT_TEST_DELAY_MS (set in the worker's environment
only), so that the kill lands mid-export every time.
"""

import io
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from apps.exports.jobs import export_jobs_sweep
from apps.exports.models import ExportJob, ExportStatus
from apps.exports.tasks import exports_sweep_task
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add
from tests.conftest import api_client_for, jsonl, prompt_line
from tests.workers import Worker, kill, lead_and_project, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]

PROMPTS = 100  # two candidates each: 100 comparisons, 300 judgments
ROWS = 3 * PROMPTS
SLOW = {"EXPORT_PROGRESS_ROWS": "10", "EXPORT_TEST_DELAY_MS": "100"}  # about 3 s for 300 rows
TIMEOUT = 60


def judged_project(slug: str) -> tuple[User, Project]:
    lead, project = lead_and_project(slug)
    from apps.batches.services import batch_import

    data = jsonl(*(prompt_line(f"p-{i}", n=2) for i in range(PROMPTS)))
    batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    for name in ("ann", "ben", "cat"):
        user = User.objects.create_user(f"{name}-{slug}", password="pw-for-tests")
        membership_add(project=project, user=user, role="annotator")
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    return lead, project


def job_when(client: Any, url: str, done: Any, worker: Worker | None = None) -> dict[str, Any]:
    """Polls the job until `done(job)` (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        job: dict[str, Any] = client.get(url).json()
        if done(job):
            return job
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"the export never got there in {TIMEOUT} s: {job}")
        time.sleep(0.05)


def wait_until_stale(job_id: int, stale_after: float) -> None:
    """Until the job's heartbeat is older than `stale_after` seconds (and stays put)."""
    heartbeat = ExportJob.objects.get(pk=job_id).heartbeat_at
    assert heartbeat is not None
    time.sleep(max(0.0, stale_after + 0.5 - (timezone.now() - heartbeat).total_seconds()))
    job = ExportJob.objects.get(pk=job_id)
    assert job.heartbeat_at == heartbeat  # nobody is writing it: the worker is dead
    assert job.status == ExportStatus.RUNNING  # ... and the job would be stuck without the sweep


def test_progress_shows_and_a_killed_worker_s_export_is_run_again_to_done(
    queue: str, workers: list[Worker], settings: Any
) -> None:
    lead, project = judged_project("bg-kill")
    client = api_client_for(lead)
    first = start_worker(workers, queue, **SLOW)
    response = client.post(
        f"/api/v1/projects/{project.slug}/exports/",
        {"format": "judgments", "file_format": "parquet"},
        format="json",
    )
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    assert response.json()["status"] == "queued"

    # Progress, as the API shows it, while the worker writes.
    early = job_when(client, url, lambda job: job["rows_written"] >= 20, first)
    later = job_when(client, url, lambda job: job["rows_written"] >= 60, first)
    for job in (early, later):
        assert job["status"] == "running", job
        assert job["rows_total"] == ROWS
        assert 0 < job["percent"] < 100
        assert job["download"] is None
    assert early["percent"] < later["percent"]
    assert early["heartbeat_at"] < later["heartbeat_at"]

    kill(first)
    job_id = later["id"]
    assert list(Path(settings.EXPORT_ROOT).glob(f".export-{job_id}-1.tmp"))  # half a file
    settings.EXPORT_STALE_AFTER = 2
    wait_until_stale(job_id, 2)

    assert export_jobs_sweep()["requeued"] == 1  # the beat job's work, here in-process
    assert client.get(url).json()["status"] == "queued"
    second = start_worker(workers, queue)
    job = job_when(client, url, lambda job: job["status"] not in ("queued", "running"), second)

    assert job["status"] == "done", job
    assert job["attempts"] == 2
    assert job["rows_written"] == ROWS
    download: Any = client.get(job["download"])
    data = b"".join(download.streaming_content)
    table = pq.read_table(io.BytesIO(data))
    streamed: Any = client.get(f"/api/v1/projects/{project.slug}/export/", {"format": "judgments"})
    rows = [json.loads(line) for line in b"".join(streamed.streaming_content).splitlines()]
    assert table.num_rows == len(rows) == ROWS
    assert table.column("comparison_id").to_pylist() == [row["comparison_id"] for row in rows]
    assert not list(Path(settings.EXPORT_ROOT).glob("*.tmp"))
    second.wait_for_log(f"export {job_id} done: {ROWS} rows")


def test_a_worker_killed_at_the_last_attempt_leaves_a_failed_job(
    queue: str, workers: list[Worker], settings: Any
) -> None:
    """With EXPORT_MAX_ATTEMPTS=1, the sweep (run as the beat job, by a real worker) marks the
    killed run's job failed, with the reason, and removes its temporary file."""
    lead, project = judged_project("bg-fail")
    client = api_client_for(lead)
    first = start_worker(workers, queue, **SLOW)
    response = client.post(
        f"/api/v1/projects/{project.slug}/exports/", {"format": "judgments"}, format="json"
    )
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    running = job_when(client, url, lambda job: job["rows_written"] >= 20, first)
    kill(first)
    wait_until_stale(running["id"], 2)

    sweeper = start_worker(workers, queue, EXPORT_STALE_AFTER="2", EXPORT_MAX_ATTEMPTS="1")
    result = exports_sweep_task.delay()
    assert result.get(timeout=30) == {"requeued": 0, "failed": 1, "resent": 0, "expired": 0}

    job = client.get(url).json()
    assert job["status"] == "failed", job
    assert job["attempts"] == 1
    assert "no heartbeat" in job["error"]
    assert job["download"] is None
    assert client.get(f"{url}download/").status_code == 409
    assert not list(Path(settings.EXPORT_ROOT).glob("*"))
    sweeper.wait_for_log("export sweep:")


def test_a_running_export_cancelled_stops_its_worker_and_leaves_no_file(
    queue: str, workers: list[Worker], settings: Any
) -> None:
    """Cancelled mid-export: the worker stops at its next progress write, deletes its partial
    file, and is free for the next job; the job stays cancelled, and the sweep leaves it."""
    lead, project = judged_project("bg-cancel")
    client = api_client_for(lead)
    worker = start_worker(workers, queue, **SLOW)
    jobs = f"/api/v1/projects/{project.slug}/exports/"
    response = client.post(jobs, {"format": "judgments"}, format="json")
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    running = job_when(client, url, lambda job: job["rows_written"] >= 20, worker)
    job_id = running["id"]
    assert list(Path(settings.EXPORT_ROOT).glob(f".export-{job_id}-1.tmp"))  # half a file

    cancelled = client.post(f"{url}cancel/")

    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    worker.wait_for_log(f"export {job_id} attempt 1 was cancelled; stopped", timeout=TIMEOUT)
    assert not list(Path(settings.EXPORT_ROOT).glob("*"))
    job = client.get(url).json()
    assert (job["status"], job["attempts"], job["download"]) == ("cancelled", 1, None)
    assert job["rows_written"] < ROWS
    assert client.get(f"{url}download/").status_code == 409
    assert export_jobs_sweep(timezone.now() + timedelta(hours=1))["requeued"] == 0
    assert ExportJob.objects.get(pk=job_id).status == ExportStatus.CANCELLED

    # The worker goes on with the next job.
    response = client.post(jobs, {"format": "trl"}, format="json")
    done = job_when(client, response.json()["url"], lambda job: job["status"] == "done", worker)
    assert done["rows_written"] == PROMPTS
