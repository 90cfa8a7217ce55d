"""Generation jobs in REAL Celery worker processes, on PostgreSQL and Redis, against the fake
OpenAI-compatible server (200 ms an answer): a worker killed (SIGKILL) mid-job and the sweep
that resumes it, a cancel that stops a running job, and comparisons that annotators can take
while the job still runs. Each ends with exactly one candidate per (prompt, endpoint, sample)."""

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.generation.models import GenerationJob, JobStatus
from apps.generation.services import (
    generation_cancel,
    generation_resume,
    generation_start,
    generation_sweep,
)
from apps.generation.tasks import generation_sweep_task
from apps.judging.queue import assignment_next
from apps.projects.services import membership_add
from tests.endpoints.fake_llm import FakeLLM, fake_llm
from tests.workers import Worker, kill, lead_and_project, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]

PROMPTS = 40
SAMPLES = 2
TIMEOUT = 90


@pytest.fixture
def slow_llm() -> Iterator[FakeLLM]:
    with fake_llm(models=("model-x",), latency=0.2) as server:
        yield server


def until(what: str, check: Any, worker: Worker | None = None) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := check()):
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {TIMEOUT} s")
        time.sleep(0.05)
    return value


def prompts_batch(slug: str, llm: FakeLLM) -> tuple[Any, Batch, ModelEndpoint]:
    lead, project = lead_and_project(slug)
    batch = Batch.objects.create(
        project=project, name="prompts", status=BatchStatus.ACTIVE, candidates_optional=True
    )
    Prompt.objects.bulk_create(
        Prompt(project=project, batch=batch, external_id=f"p-{i}", content=f"question {i}")
        for i in range(PROMPTS)
    )
    endpoint = endpoint_save(
        ModelEndpoint(
            project=project, name="x", base_url=llm.url, model="model-x", max_concurrency=2
        ),
        by=lead,
    )
    return lead, batch, endpoint


def candidates(batch: Batch) -> int:
    return Candidate.objects.filter(prompt__batch=batch).count()


def assert_exactly_one_each(batch: Batch) -> None:
    made = Counter(
        Candidate.objects.filter(prompt__batch=batch).values_list(
            "prompt_id", "endpoint_id", "sample_index"
        )
    )
    assert len(made) == PROMPTS * SAMPLES
    assert set(made.values()) == {1}
    # One pair per prompt (two samples), none twice.
    per_prompt = Counter(Comparison.objects.filter(batch=batch).values_list("prompt_id", flat=True))
    assert len(per_prompt) == PROMPTS and set(per_prompt.values()) == {1}
    batch.refresh_from_db()
    assert batch.comparison_count == PROMPTS


def test_a_job_whose_worker_is_killed_is_resumed_by_the_sweep_without_a_duplicate(
    queue: str, workers: list[Worker], slow_llm: FakeLLM
) -> None:
    lead, batch, endpoint = prompts_batch("killed", slow_llm)
    first = start_worker(workers, queue)
    job = generation_start(batch=batch, endpoints=[endpoint], samples=SAMPLES, by=lead)
    until("a third of the responses", lambda: candidates(batch) >= PROMPTS * SAMPLES // 3, first)
    # Annotators can start before the whole batch is generated.
    assert Comparison.objects.filter(batch=batch).exists()
    membership_add(project=batch.project, user=lead, role="annotator")
    assert assignment_next(project=batch.project, annotator=lead) is not None
    kill(first)
    made = candidates(batch)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and made < PROMPTS * SAMPLES

    # The beat sweep, once the heartbeat is stale, re-queues the job for another worker.
    start_worker(workers, queue)
    later = timezone.now() + timedelta(seconds=settings.GENERATION_STALE_AFTER + 1)
    assert generation_sweep(now=later)["requeued"] == 1
    until(
        "the job done",
        lambda: GenerationJob.objects.filter(pk=job.pk, status=JobStatus.DONE).exists(),
    )
    job.refresh_from_db()
    assert job.attempts == 2
    assert (job.requests_done, job.requests_failed) == (PROMPTS * SAMPLES, 0)
    assert_exactly_one_each(batch)
    # The second run asked only for what the first had not stored: at most the requests that
    # were in flight when the worker died (two threads, two queued each) were asked twice.
    assert PROMPTS * SAMPLES <= len(slow_llm.chat_requests()) <= PROMPTS * SAMPLES + 4
    # Nothing left for the sweep.
    assert generation_sweep_task.apply().get() == {"resent": 0, "requeued": 0, "stopped": 0}


def test_a_cancel_stops_a_running_job_and_a_resume_finishes_it(
    queue: str, workers: list[Worker], slow_llm: FakeLLM
) -> None:
    lead, batch, endpoint = prompts_batch("cancelled", slow_llm)
    worker = start_worker(workers, queue)
    job = generation_start(batch=batch, endpoints=[endpoint], samples=SAMPLES, by=lead)
    until("some responses", lambda: candidates(batch) >= 10, worker)
    generation_cancel(job=job, by=lead)
    worker.wait_for_log("superseded", timeout=10)
    stopped_at = candidates(batch)
    asked = len(slow_llm.chat_requests())
    time.sleep(1)
    assert candidates(batch) == stopped_at < PROMPTS * SAMPLES
    assert len(slow_llm.chat_requests()) == asked
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.requests_done == stopped_at  # recounted after the last answers in flight

    generation_resume(job=job, by=lead)
    until(
        "the job done",
        lambda: GenerationJob.objects.filter(pk=job.pk, status=JobStatus.DONE).exists(),
        worker,
    )
    assert_exactly_one_each(batch)
    assert len(slow_llm.chat_requests()) == PROMPTS * SAMPLES
