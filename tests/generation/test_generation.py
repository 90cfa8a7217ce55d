"""Generating candidates against the fake OpenAI-compatible server on loopback (a real HTTP
server): what each candidate records, the pairings, costs, per-prompt failures and resume,
the circuit that stops a job, idempotence, who may start a job, and the settings refused.
Tasks run eagerly here; tests/generation/test_worker.py runs them in real workers."""

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from itertools import combinations
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from annotate.errors import Conflict, Forbidden
from apps.batches.audit import in_audit_sample
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.endpoints.models import ModelEndpoint
from apps.generation.models import GenerationFailure, GenerationJob, JobStatus, Pairing
from apps.generation.services import (
    GenerationInvalid,
    batch_usage,
    generation_cancel,
    generation_resume,
    generation_run,
    generation_start,
    job_failures_by_prompt,
    pairs_for,
    prompt_messages,
)
from apps.judging.queue import assignment_next
from apps.projects.models import Project, Scheme
from apps.projects.services import membership_add, project_create
from tests.conftest import events
from tests.endpoints.fake_llm import FakeLLM, Fault

pytestmark = pytest.mark.django_db


@pytest.fixture
def start(bob: User, django_capture_on_commit_callbacks: Any) -> Callable[..., GenerationJob]:
    """Starts a job as the lead; the job runs (eagerly) when the start commits."""

    def run(batch: Batch, endpoints: list[ModelEndpoint], **settings: Any) -> GenerationJob:
        settings.setdefault("samples", 1)
        settings.setdefault("by", bob)
        with django_capture_on_commit_callbacks(execute=True):
            job = generation_start(batch=batch, endpoints=endpoints, **settings)
        job.refresh_from_db()
        return job

    return run


def generated(batch: Batch) -> list[Candidate]:
    return list(Candidate.objects.filter(prompt__batch=batch).order_by("prompt_id", "pk"))


def test_every_candidate_records_its_endpoint_parameters_usage_and_latency(
    prompts_batch: Any, endpoint: Any, start: Any, llm: FakeLLM
) -> None:
    batch = prompts_batch("What is 2 + 2?", "Name a prime.", "Say hi.")
    x = endpoint("x", "model-x", input_price=Decimal("1.5"), output_price=Decimal("2"))
    y = endpoint("y", "model-y")
    job = start(batch, [x, y], samples=2, temperature=0.7, top_p=0.9, max_tokens=64, seed=10)

    assert job.status == JobStatus.DONE, job.note
    rows = generated(batch)
    assert len(rows) == 3 * 2 * 2
    assert Counter((c.prompt_id, c.endpoint_id) for c in rows) == {
        (p.pk, e.pk): 2 for p in Prompt.objects.filter(batch=batch) for e in (x, y)
    }
    for row in rows:
        assert row.endpoint is not None and row.prompt_tokens and row.completion_tokens
        assert row.model == row.endpoint.model
        assert row.sample_index in (0, 1)
        assert row.finish_reason == "stop"
        assert row.prompt_tokens and row.completion_tokens
        assert row.latency_ms is not None
        assert row.params == {
            "endpoint": row.endpoint.name,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 64,
            "seed": 10 + row.sample_index,
        }
        # A neutral id: annotators see response ids, which must not name the model.
        assert row.external_id.startswith("g-")
        assert row.endpoint.name not in row.external_id
        assert row.text.startswith("Answer ")
    # An endpoint's samples differ: each is asked with its own seed.
    assert len({(row.endpoint_id, row.text) for row in rows}) == len(rows)
    sent = [r.body for r in llm.chat_requests()]
    assert sorted(b["seed"] for b in sent) == sorted([10, 11] * 6)
    assert {(b["temperature"], b["top_p"], b["max_tokens"]) for b in sent} == {(0.7, 0.9, 64)}

    # Cost at the endpoint's prices, per million tokens; none where it has no prices.
    for row in rows:
        if row.endpoint_id == x.pk:
            expected = (
                Decimal(row.prompt_tokens or 0) * Decimal("1.5") + (row.completion_tokens or 0) * 2
            )
            assert row.cost == (expected / 1_000_000).quantize(Decimal("0.00000001"))
        else:
            assert row.cost is None
    x_cost = sum(row.cost for row in rows if row.cost is not None)
    assert job.cost == x_cost
    assert job.prompt_tokens == sum(row.prompt_tokens or 0 for row in rows)
    assert job.completion_tokens == sum(row.completion_tokens or 0 for row in rows)
    usage = batch_usage(batch)
    assert usage["candidates"] == 12 and usage["cost"] == x_cost and usage["unpriced"] == 6
    assert (job.requests_total, job.requests_done, job.requests_failed) == (12, 12, 0)
    assert (job.prompts_total, job.prompts_done) == (3, 3)


def test_every_pair_of_a_prompt_s_responses_becomes_a_comparison(
    prompts_batch: Any, endpoint: Any, start: Any
) -> None:
    batch = prompts_batch("one", "two")
    job = start(batch, [endpoint("x", "model-x"), endpoint("y", "model-y")], samples=2)
    for prompt in Prompt.objects.filter(batch=batch):
        ids = sorted(prompt.candidates.values_list("pk", flat=True))
        pairs = set(
            Comparison.objects.filter(prompt=prompt).values_list("candidate_a", "candidate_b")
        )
        assert pairs == set(combinations(ids, 2))
    batch.refresh_from_db()
    assert batch.comparison_count == job.comparisons_made == 2 * 6
    assert not Comparison.objects.filter(batch=batch, is_gold=True).exists()


def test_generated_comparisons_join_the_audit_sample_as_the_hash_says(
    prompts_batch: Any, endpoint: Any, start: Any
) -> None:
    batch = prompts_batch("one", "two", "three")
    batch.project.audit_rate = 0.5
    batch.project.save()
    start(batch, [endpoint("x", "model-x"), endpoint("y", "model-y")], samples=2)
    comparisons = Comparison.objects.filter(batch=batch)
    assert comparisons.count() == 18
    audited = set(comparisons.filter(is_audit=True).values_list("pk", flat=True))
    assert audited == {c.pk for c in comparisons if in_audit_sample(c.pk, 0.5)}
    assert 0 < len(audited) < 18


def test_k_random_pairs_per_prompt_are_drawn_the_same_way_every_time(
    prompts_batch: Any, endpoint: Any, start: Any
) -> None:
    batch = prompts_batch("one", "two", "three")
    job = start(batch, [endpoint()], samples=4, pairing=Pairing.RANDOM, pairs_per_prompt=2)
    assert job.status == JobStatus.DONE
    for prompt in Prompt.objects.filter(batch=batch):
        formed = set(
            Comparison.objects.filter(prompt=prompt).values_list("candidate_a", "candidate_b")
        )
        assert len(formed) == 2
        candidates = list(prompt.candidates.order_by("pk").values_list("pk", "model"))
        assert set(pairs_for(job, prompt.pk, candidates)) == formed


def test_one_pair_per_pair_of_models(prompts_batch: Any, endpoint: Any, start: Any) -> None:
    batch = prompts_batch("one", "two")
    x, y = endpoint("x", "model-x"), endpoint("y", "model-y")
    start(batch, [x, y], samples=3, pairing=Pairing.MODELS)
    for prompt in Prompt.objects.filter(batch=batch):
        [comparison] = Comparison.objects.filter(prompt=prompt).select_related(
            "candidate_a", "candidate_b"
        )
        assert {comparison.candidate_a.model, comparison.candidate_b.model} == {
            "model-x",
            "model-y",
        }


def test_imported_responses_are_paired_with_generated_ones(
    prompts_batch: Any, endpoint: Any, start: Any
) -> None:
    batch = prompts_batch("one", candidates=1)
    start(batch, [endpoint()], samples=2)
    prompt = Prompt.objects.get(batch=batch)
    assert prompt.candidates.count() == 3
    assert Comparison.objects.filter(prompt=prompt).count() == 3


def test_a_listwise_project_gets_one_ranking_per_prompt(
    alice: User, bob: User, endpoint: Any, prompts_batch: Any, start: Any
) -> None:
    ranked = project_create(
        slug="ranked", name="Ranked", created_by=alice, overlap=1, scheme=Scheme.LISTWISE
    )
    membership_add(project=ranked, user=bob, role="lead")
    batch = prompts_batch("one", "two", target=ranked)
    start(batch, [endpoint("x", "model-x", project=ranked)], samples=4)
    for prompt in Prompt.objects.filter(batch=batch):
        [comparison] = Comparison.objects.filter(prompt=prompt)
        assert sorted(comparison.candidate_ids or []) == sorted(
            prompt.candidates.values_list("pk", flat=True)
        )


def test_the_system_prompt_goes_first_unless_the_conversation_has_its_own(
    prompts_batch: Any, endpoint: Any, start: Any, llm: FakeLLM
) -> None:
    conversation = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
    ]
    batch = prompts_batch("plain", conversation)
    start(batch, [endpoint()], system_prompt="You are helpful.")
    sent = sorted((r.body["messages"] for r in llm.chat_requests()), key=len)
    assert sent[0] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "plain"},
    ] or sent[1] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "plain"},
    ]
    assert conversation in sent
    assert prompt_messages("x", "") == [{"role": "user", "content": "x"}]


def test_failures_are_listed_per_prompt_and_a_resume_makes_only_what_is_missing(
    prompts_batch: Any,
    endpoint: Any,
    start: Any,
    llm: FakeLLM,
    bob: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = prompts_batch("fine one", "this one is refused", "fine two")
    llm.fail_when("refused", Fault(status=400, body=b'{"error": {"message": "prompt too long"}}'))
    job = start(batch, [endpoint()], samples=2)

    assert job.status == JobStatus.DONE
    assert "2 request(s) failed" in job.note
    assert (job.requests_done, job.requests_failed) == (4, 2)
    [listed] = job_failures_by_prompt(job)
    assert listed["prompt"] == "p-1"
    assert [(f["sample"], f["error"]) for f in listed["failures"]] == [
        (0, "http_400"),
        (1, "http_400"),
    ]
    assert "prompt too long" in listed["failures"][0]["detail"]
    refused = Prompt.objects.get(batch=batch, external_id="p-1")
    assert not refused.candidates.exists() and not refused.comparisons.exists()
    # The others have their comparisons already.
    assert Comparison.objects.filter(batch=batch).count() == 2

    asked = len(llm.chat_requests())
    llm.heal()
    with django_capture_on_commit_callbacks(execute=True):
        generation_resume(job=job, by=bob)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.note == ""
    assert len(llm.chat_requests()) - asked == 2  # only the two that failed
    assert not GenerationFailure.objects.filter(job=job).exists()
    assert (job.requests_done, job.requests_failed) == (6, 0)
    assert (job.prompts_done, job.prompts_total) == (3, 3)
    assert refused.candidates.count() == 2 and refused.comparisons.count() == 1
    assert Comparison.objects.filter(batch=batch).count() == 3
    [ended_first, ended_again] = events("generation_ended")
    assert ended_first.details["failed"] == 2 and ended_again.details["failed"] == 0
    assert len(events("generation_resumed")) == 1


def test_a_429_with_retry_after_is_waited_for(
    prompts_batch: Any, endpoint: Any, start: Any, llm: FakeLLM
) -> None:
    batch = prompts_batch("one")
    llm.fail_next(Fault(status=429, headers={"Retry-After": "1"}))
    job = start(batch, [endpoint(max_retries=2)])
    assert job.status == JobStatus.DONE
    assert len(generated(batch)) == 1
    assert len(llm.chat_requests()) == 2


def test_an_endpoint_that_keeps_failing_stops_the_job_cleanly(
    prompts_batch: Any, endpoint: Any, start: Any, llm: FakeLLM
) -> None:
    batch = prompts_batch(*(f"prompt {i}" for i in range(30)))
    llm.fail_when("prompt", Fault(status=503))
    job = start(batch, [endpoint("down", max_concurrency=1)], samples=1)

    assert job.status == JobStatus.STOPPED
    assert "down kept failing" in job.note and "resume" in job.note
    # It stopped asking once the circuit opened: not one request per prompt.
    assert len(llm.chat_requests()) < 30
    assert not Candidate.objects.filter(prompt__batch=batch).exists()
    assert not Comparison.objects.filter(batch=batch).exists()
    [ended] = events("generation_ended")
    assert ended.details["status"] == "stopped"


def test_a_missing_key_stops_the_job_saying_which_variable(
    prompts_batch: Any, endpoint: Any, start: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANNOTATE_KEY_GEN_TEST", raising=False)
    batch = prompts_batch("one")
    job = start(batch, [endpoint(key_env="ANNOTATE_KEY_GEN_TEST")])
    assert job.status == JobStatus.STOPPED
    assert "ANNOTATE_KEY_GEN_TEST is not set" in job.note


def test_the_key_is_sent_as_a_bearer_token(
    prompts_batch: Any, endpoint: Any, start: Any, monkeypatch: Any, llm: FakeLLM
) -> None:
    monkeypatch.setenv("ANNOTATE_KEY_GEN_TEST", "sk-test-123")
    start(prompts_batch("one"), [endpoint(key_env="ANNOTATE_KEY_GEN_TEST")])
    [request] = llm.chat_requests()
    assert request.headers["Authorization"] == "Bearer sk-test-123"


def test_a_rerun_asks_only_for_what_has_no_candidate_and_never_duplicates(
    prompts_batch: Any,
    endpoint: Any,
    start: Any,
    llm: FakeLLM,
    bob: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = prompts_batch("one", "two")
    x = endpoint()
    job = start(batch, [x], samples=3)
    assert len(generated(batch)) == 6
    # A run that died after one response (the rest gone): its job is resumed.
    Candidate.objects.filter(prompt__batch=batch, sample_index__gt=0).delete()
    asked = len(llm.chat_requests())
    with django_capture_on_commit_callbacks(execute=True):
        generation_resume(job=job, by=bob)
    assert len(llm.chat_requests()) - asked == 4
    rows = generated(batch)
    assert len(rows) == 6
    assert Counter((c.prompt_id, c.sample_index) for c in rows).most_common(1)[0][1] == 1
    # A second delivery of the task finds the job done: nothing is asked.
    assert generation_run(job_id=job.pk) == JobStatus.DONE
    assert len(llm.chat_requests()) - asked == 4
    # The database itself refuses a second candidate for a (prompt, endpoint, sample).
    one = rows[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Candidate.objects.create(
            prompt_id=one.prompt_id,
            external_id="another",
            text="dup",
            endpoint=x,
            sample_index=one.sample_index,
        )


def test_a_second_job_on_the_batch_extends_the_first_s_samples(
    prompts_batch: Any, endpoint: Any, start: Any, llm: FakeLLM
) -> None:
    batch = prompts_batch("one")
    x = endpoint()
    start(batch, [x], samples=2)
    second = start(batch, [x], samples=3)
    assert len(llm.chat_requests()) == 3
    assert second.requests_done == 3 and len(generated(batch)) == 3
    assert Comparison.objects.filter(batch=batch).count() == 3


def test_cancel_and_resume_are_the_lead_s_and_audited(
    prompts_batch: Any, endpoint: Any, bob: User, annotators: list[User], no_worker: Any
) -> None:
    batch = prompts_batch("one")
    job = generation_start(batch=batch, endpoints=[endpoint()], samples=1, by=bob)
    assert job.status == JobStatus.QUEUED
    with pytest.raises(Forbidden):
        generation_cancel(job=job, by=annotators[0])
    with pytest.raises(Conflict, match="wait for it, or cancel it"):
        generation_start(batch=batch, endpoints=[endpoint("y", "model-y")], samples=1, by=bob)
    cancelled = generation_cancel(job=job, by=bob)
    assert cancelled.status == JobStatus.CANCELLED
    with pytest.raises(Conflict, match="nothing to cancel"):
        generation_cancel(job=job, by=bob)
    # A run that arrives after the cancel does nothing.
    assert generation_run(job_id=job.pk) == JobStatus.CANCELLED
    assert not Candidate.objects.filter(prompt__batch=batch).exists()
    with pytest.raises(Forbidden):
        generation_resume(job=job, by=annotators[0])
    assert generation_resume(job=job, by=bob).status == JobStatus.QUEUED
    assert [e.action for e in events("generation_started")] == ["generation_started"]
    assert len(events("generation_cancelled")) == 1 and len(events("generation_resumed")) == 1


def test_only_the_project_s_leads_and_staff_may_start_a_job(
    prompts_batch: Any,
    endpoint: Any,
    annotators: list[User],
    charlie: User,
    alice: User,
    start: Any,
) -> None:
    batch = prompts_batch("one")
    x = endpoint()
    for outsider in (annotators[0], charlie, None):
        with pytest.raises(Forbidden):
            generation_start(batch=batch, endpoints=[x], samples=1, by=outsider)
    assert not GenerationJob.objects.exists()
    assert start(batch, [x], by=alice).status == JobStatus.DONE


def test_another_project_s_endpoint_cannot_be_used(
    prompts_batch: Any, endpoint: Any, alice: User, bob: User, llm: FakeLLM
) -> None:
    elsewhere = project_create(slug="elsewhere", name="Elsewhere", created_by=alice)
    membership_add(project=elsewhere, user=bob, role="lead")
    theirs = endpoint("theirs", project=elsewhere)
    with pytest.raises(GenerationInvalid, match="Not an endpoint of this project: theirs"):
        generation_start(batch=prompts_batch("one"), endpoints=[theirs], samples=1, by=bob)


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"samples": 0}, "samples", "1 to 16"),
        ({"samples": 17}, "samples", "1 to 16"),
        ({"samples": 9, "two": True}, "samples", "at most 16"),
        ({"pairing": "random"}, "pairs_per_prompt", "how many random pairs"),
        ({"pairing": "random", "pairs_per_prompt": 0}, "pairs_per_prompt", "1 to 120"),
        ({"pairing": "models"}, "pairing", "at least two endpoints"),
        ({"pairing": "best"}, "pairing", "Unknown pairing"),
        ({"temperature": 2.5}, "temperature", "0 to 2"),
        ({"top_p": 0}, "top_p", "above 0"),
        ({"max_tokens": 0}, "max_tokens", "1 to 1,000,000"),
        ({"none": True}, "endpoints", "at least one"),
        ({"twice": True}, "endpoints", "listed twice"),
    ],
)
def test_bad_given_are_refused_by_field_and_nothing_is_created(
    prompts_batch: Any,
    endpoint: Any,
    bob: User,
    given: dict[str, Any],
    field: str,
    message: str,
) -> None:
    batch = prompts_batch("one")
    x = endpoint()
    chosen = [x]
    if given.pop("two", False):
        chosen.append(endpoint("y", "model-y"))
    if given.pop("none", False):
        chosen = []
    if given.pop("twice", False):
        chosen = [x, x]
    given.setdefault("samples", 1)
    with pytest.raises(GenerationInvalid) as raised:
        generation_start(batch=batch, endpoints=chosen, by=bob, **given)
    assert message in raised.value.problems[field]
    assert not GenerationJob.objects.exists()


def test_a_batch_that_is_not_imported_takes_no_job(
    prompts_batch: Any, endpoint: Any, bob: User
) -> None:
    batch = prompts_batch("one")
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.IMPORTING)
    batch.refresh_from_db()
    with pytest.raises(GenerationInvalid, match="only an imported batch"):
        generation_start(batch=batch, endpoints=[endpoint()], samples=1, by=bob)


def test_a_listwise_project_takes_no_pairing_but_all(
    alice: User, bob: User, endpoint: Any, prompts_batch: Any
) -> None:
    ranked = project_create(
        slug="ranked", name="Ranked", created_by=alice, overlap=1, scheme=Scheme.LISTWISE
    )
    membership_add(project=ranked, user=bob, role="lead")
    batch = prompts_batch("one", target=ranked)
    x = endpoint("x", project=ranked)
    with pytest.raises(GenerationInvalid, match="ranks all"):
        generation_start(
            batch=batch, endpoints=[x], samples=3, by=bob, pairing="random", pairs_per_prompt=1
        )
    with pytest.raises(GenerationInvalid, match="at most 8"):
        generation_start(batch=batch, endpoints=[x], samples=9, by=bob)


def test_generated_comparisons_are_served_to_annotators(
    prompts_batch: Any, endpoint: Any, start: Any, annotators: list[User], project: Project
) -> None:
    batch = prompts_batch("one")
    start(batch, [endpoint()], samples=2)
    lease = assignment_next(project=project, annotator=annotators[0])
    assert lease is not None and lease.comparison.batch_id == batch.pk
