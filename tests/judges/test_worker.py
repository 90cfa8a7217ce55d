"""AI judging in REAL Celery worker processes, on PostgreSQL and Redis, against the fake
OpenAI-compatible server answering as a judge (100 ms a reply): a worker killed mid-job, the
sweep that re-queues it, and exactly one verdict and one AI judgment per comparison at the end,
the people's counts untouched."""

import io
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.batches.models import Comparison
from apps.batches.services import batch_import
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.judges.models import Judge, JudgeJob, JudgeJobStatus, Verdict
from apps.judges.services import judge_save, judging_start, judging_sweep
from apps.judging.models import Judgment, Source
from tests.conftest import jsonl
from tests.endpoints.fake_llm import FakeLLM, fake_llm
from tests.judges.test_judging import truthful
from tests.workers import Worker, kill, lead_and_project, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]

PROMPTS = 30
TIMEOUT = 90


@pytest.fixture
def slow_judge() -> Iterator[FakeLLM]:
    with fake_llm(models=("judge-model",), latency=0.1, responder=truthful) as server:
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


def test_a_judging_job_whose_worker_is_killed_ends_with_one_verdict_each(
    queue: str, workers: list[Worker], slow_judge: FakeLLM
) -> None:
    lead, project = lead_and_project("judged")
    rows = [
        {
            "id": f"p{i}",
            "prompt": f"Question {i}?",
            "candidates": [
                {"id": "good", "text": f"GOOD answer {i}"},
                {"id": "bad", "text": f"BAD answer {i}"},
            ],
        }
        for i in range(PROMPTS)
    ]
    data = jsonl(*rows)
    batch = batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    endpoint = endpoint_save(
        ModelEndpoint(
            project=project,
            name="judge-ep",
            base_url=slow_judge.url,
            model="judge-model",
            max_concurrency=2,
        ),
        by=lead,
    )
    judge = judge_save(Judge(project=project, name="judge", endpoint=endpoint), by=lead)
    first = start_worker(workers, queue)
    job = judging_start(judge=judge, batch=batch, by=lead)
    until("a third judged", lambda: Verdict.objects.count() >= PROMPTS // 3, first)
    kill(first)
    assert Verdict.objects.count() < PROMPTS

    start_worker(workers, queue)
    later = timezone.now() + timedelta(seconds=settings.GENERATION_STALE_AFTER + 1)
    assert judging_sweep(now=later)["requeued"] == 1
    until(
        "the job done",
        lambda: JudgeJob.objects.filter(pk=job.pk, status=JudgeJobStatus.DONE).exists(),
    )
    job.refresh_from_db()
    assert (job.comparisons_done, job.comparisons_failed, job.attempts) == (PROMPTS, 0, 2)
    assert set(Counter(Verdict.objects.values_list("comparison_id", flat=True)).values()) == {1}
    ai = Judgment.objects.filter(source=Source.AI)
    assert ai.count() == PROMPTS
    assert set(Counter(ai.values_list("comparison_id", flat=True)).values()) == {1}
    assert not Comparison.objects.filter(batch=batch, judgment_count__gt=0).exists()
