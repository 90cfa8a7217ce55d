"""Background imports in REAL Celery worker processes, on PostgreSQL and Redis: a worker killed
(SIGKILL) while it stores a batch's rows, and a task message that was lost. The sweep brings each
import to completion, with exact counts, and the judgments already in the project stay as they
were. The pattern of tests/exports/test_worker.py: each worker consumes a queue of its own.

The import is slowed by the test hook IMPORT_TEST_DELAY_MS (set in the first worker's
environment only), so that the kill lands mid-store every time.
"""

import time
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, transaction
from django.utils import timezone

from apps.batches.models import Batch, BatchSource, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.services import (
    STORE_PROGRESS_KEY,
    batch_import_progress,
    batch_imports_sweep,
)
from apps.batches.tasks import imports_sweep_task
from apps.judging.models import Judgment
from apps.projects.models import Project
from tests.conftest import api_client_for, jsonl, prompt_line
from tests.exports.test_worker import judged_project
from tests.workers import Worker, forget_queue, kill, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]

PROMPTS = 4000  # three candidates each: 12,000 candidates and 12,000 comparisons
ROWS = PROMPTS + 2 * 3 * PROMPTS  # what the store writes: 14 bulk inserts of 2,000
TIMEOUT = 90


def upload(client: Any, project: Project) -> int:
    data = jsonl(*(prompt_line(f"q-{i}", n=3) for i in range(PROMPTS)))
    response = client.post(
        f"/api/v1/projects/{project.slug}/batches/", data=data, content_type="application/jsonl"
    )
    assert response.status_code == 202, response.content
    return int(response.json()["id"])


def until(what: str, check: Any, worker: Worker | None = None) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := check()):
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {TIMEOUT} s")
        time.sleep(0.05)
    return value


def judged_state(project: Project) -> list[tuple[Any, ...]]:
    """Every judgment, and the counters of every comparison, of the project's first batch."""
    return [
        *Judgment.objects.filter(comparison__project=project)
        .order_by("id")
        .values_list("id", "comparison_id", "annotator_id", "choice"),
        *Comparison.objects.filter(project=project, judgment_count__gt=0)
        .order_by("id")
        .values_list("id", "judgment_count", "lease_count", "complete", "votes_a", "votes_b"),
    ]


def row_unlocked(batch_id: int) -> bool:
    """Whether nobody holds the batch row's lock (a killed run's transaction is gone)."""
    try:
        with transaction.atomic():
            Batch.objects.select_for_update(nowait=True).get(pk=batch_id)
    except OperationalError:
        return False
    return True


def assert_imported_once(batch: Batch) -> None:
    assert (batch.status, batch.prompt_count, batch.comparison_count) == (
        BatchStatus.ACTIVE,
        PROMPTS,
        3 * PROMPTS,
    )
    assert Prompt.objects.filter(batch=batch).count() == PROMPTS
    assert Candidate.objects.filter(prompt__batch=batch).count() == 3 * PROMPTS
    assert Comparison.objects.filter(batch=batch).count() == 3 * PROMPTS
    # Each pair once: no duplicated prompt or comparison.
    assert Prompt.objects.filter(batch=batch).values("external_id").distinct().count() == PROMPTS
    pairs = Comparison.objects.filter(batch=batch).values("candidate_a", "candidate_b")
    assert pairs.distinct().count() == 3 * PROMPTS
    assert not BatchSource.objects.filter(batch=batch).exists()
    assert not batch.import_running


def test_a_worker_killed_mid_store_leaves_nothing_and_the_sweep_retries_to_exact_counts(
    queue: str,
    workers: list[Worker],
    settings: Any,
) -> None:
    lead, project = judged_project("import-kill")
    before = judged_state(project)
    assert len(before) == 300 + 100  # 300 judgments on 100 comparisons
    client = api_client_for(lead)
    settings.IMPORT_BACKGROUND_BYTES = 1024
    first = start_worker(workers, queue, IMPORT_TEST_DELAY_MS="300")
    batch_id = upload(client, project)

    # Kill it halfway through the store: prompts and some candidates are inserted, uncommitted.
    key = STORE_PROGRESS_KEY.format(batch_id)
    until("storing half the rows", lambda: (cache.get(key) or [0])[0] >= ROWS // 2, first)
    assert Batch.objects.get(pk=batch_id).import_attempts == 1
    kill(first)

    # PostgreSQL rolls the dead run's transaction back: nothing of it was ever stored.
    until("the killed run's lock released", lambda: row_unlocked(batch_id))
    assert not Prompt.objects.filter(batch_id=batch_id).exists()
    assert not Comparison.objects.filter(batch_id=batch_id).exists()
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.status, batch.import_running) == (BatchStatus.IMPORTING, True)
    assert BatchSource.objects.filter(batch_id=batch_id).exists()

    settings.IMPORT_STALE_AFTER = 2
    heartbeat = batch.import_heartbeat_at
    assert heartbeat is not None
    time.sleep(max(0.0, 2.5 - (timezone.now() - heartbeat).total_seconds()))
    assert batch_import_progress(Batch.objects.get(pk=batch_id))["phase"] == "storing"  # stale
    assert batch_imports_sweep() == {"requeued": 1, "failed": 0, "resent": 0}
    assert batch_import_progress(Batch.objects.get(pk=batch_id))["phase"] == "queued"
    note = Batch.objects.get(pk=batch_id).import_note
    assert note == "attempt 1 stopped (no heartbeat for 2 s: its worker died or hung); re-queued"

    second = start_worker(workers, queue)
    until(
        "the import done",
        lambda: Batch.objects.get(pk=batch_id).status != BatchStatus.IMPORTING,
        second,
    )
    batch = Batch.objects.get(pk=batch_id)
    assert batch.import_attempts == 2
    assert_imported_once(batch)
    assert client.get(f"/api/v1/batches/{batch_id}/").json()["import_attempts"] == 2
    # The judgments already given, and their comparisons' counters, are as they were.
    assert judged_state(project) == before
    second.wait_for_log(f"batch {batch_id} imported: {PROMPTS} prompts, {3 * PROMPTS} comparisons")


def test_an_import_whose_message_was_lost_is_sent_again_by_the_beat_job(
    queue: str,
    workers: list[Worker],
    settings: Any,
) -> None:
    lead, project = judged_project("import-lost")
    client = api_client_for(lead)
    settings.IMPORT_BACKGROUND_BYTES = 1024
    batch_id = upload(client, project)
    forget_queue(queue)  # the broker lost the message before any worker took it

    worker = start_worker(workers, queue, IMPORT_STALE_AFTER="2")
    time.sleep(2.5)
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.status, batch.import_attempts) == (BatchStatus.IMPORTING, 0)  # stuck

    result = imports_sweep_task.delay()  # the beat job, run by the worker
    assert result.get(timeout=30) == {"requeued": 0, "failed": 0, "resent": 1}
    until(
        "the import done",
        lambda: Batch.objects.get(pk=batch_id).status != BatchStatus.IMPORTING,
        worker,
    )
    batch = Batch.objects.get(pk=batch_id)
    assert batch.import_attempts == 1
    assert "no worker took it within 2 s" in batch.import_note
    assert_imported_once(batch)
    worker.wait_for_log("import sweep: {'requeued': 0, 'failed': 0, 'resent': 1}")
