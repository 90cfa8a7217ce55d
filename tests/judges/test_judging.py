"""AI judges against the fake OpenAI-compatible server on loopback, which answers as a judge
would (a responder reading the prompt): both orders asked, strict parsing with one retry,
disagreeing orders as a tie or as inconsistent, the judgments recorded as "ai" without
touching the people's counts (or through the queue when the judge counts), failures and
resume, who may manage judges, and that the people's API shows nothing of the AI's verdict."""

import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from annotate.errors import Conflict, Forbidden
from apps.batches.models import Batch, Comparison
from apps.batches.services import batch_import
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.judges.models import Judge, JudgeJob, JudgeJobStatus, Verdict
from apps.judges.services import (
    JudgeInvalid,
    judge_save,
    judging_cancel,
    judging_resume,
    judging_run,
    judging_start,
)
from apps.judging.models import Assignment, Choice, Judgment, Source
from apps.judging.queue import assignment_next
from apps.projects.models import Membership, Project, Role, Scheme
from apps.projects.services import membership_add, project_create
from tests.conftest import api_client_for, events, jsonl
from tests.endpoints.fake_llm import FakeLLM, fake_llm

pytestmark = pytest.mark.django_db

ANSWER_A = re.compile(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", re.S)


def first_shown_is_good(messages: list[dict[str, Any]]) -> bool:
    found = ANSWER_A.search(messages[-1]["content"])
    assert found, messages[-1]["content"]
    return "GOOD" in found.group(1)


def truthful(messages: list[dict[str, Any]]) -> str:
    return "The first is better. [[A]]" if first_shown_is_good(messages) else "[[B]]"


def always_first(messages: list[dict[str, Any]]) -> str:
    return "Verdict: [[A]]"


class Server:
    def __init__(self) -> None:
        self.reply: Callable[[list[dict[str, Any]]], str] = truthful

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        return self.reply(messages)


@pytest.fixture
def judge_llm() -> Iterator[tuple[FakeLLM, Server]]:
    server = Server()
    with fake_llm(models=("judge-model",), responder=server) as llm:
        yield llm, server


def good_and_bad(project: Project, n: int = 3, **extra: Any) -> Batch:
    rows = [
        {
            "id": f"p{i}",
            "prompt": f"Question {i}?",
            "candidates": [
                {"id": "good", "text": f"GOOD answer {i}", "model": "m1"},
                {"id": "bad", "text": f"BAD answer {i}", "model": "m2"},
            ],
            **extra,
        }
        for i in range(n)
    ]
    data = jsonl(*rows)
    return batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)


def make_judge(project: Project, llm: FakeLLM, by: User, **fields: Any) -> Judge:
    endpoint = ModelEndpoint.objects.filter(project=project, name="judge-ep").first()
    if endpoint is None:
        endpoint = endpoint_save(
            ModelEndpoint(
                project=project,
                name="judge-ep",
                base_url=llm.url,
                model="judge-model",
                max_retries=0,
                input_price="1",
                output_price="2",
            ),
            by=by,
        )
    values: dict[str, Any] = {"project": project, "name": "gpt judge", "endpoint": endpoint}
    values.update(fields)
    return judge_save(Judge(**values), by=by)


@pytest.fixture
def run(bob: User, django_capture_on_commit_callbacks: Any) -> Callable[..., JudgeJob]:
    def start(judge: Judge, batch: Batch, by: User | None = None) -> JudgeJob:
        with django_capture_on_commit_callbacks(execute=True):
            job = judging_start(judge=judge, batch=batch, by=by or bob)
        job.refresh_from_db()
        return job

    return start


def counters(batch: Batch) -> list[tuple[Any, ...]]:
    return list(
        Comparison.objects.filter(batch=batch)
        .order_by("pk")
        .values_list("judgment_count", "lease_count", "votes_a", "votes_b", "complete")
    )


def test_a_judge_labels_every_comparison_in_both_orders_besides_the_people(
    project: Project, bob: User, judge_llm: Any, run: Any
) -> None:
    llm, _ = judge_llm
    batch = good_and_bad(project)
    before = counters(batch)
    judge = make_judge(project, llm, bob)
    job = run(judge, batch)

    assert job.status == JudgeJobStatus.DONE, job.note
    assert (job.comparisons_total, job.comparisons_done, job.comparisons_failed) == (3, 3, 0)
    assert len(llm.chat_requests()) == 6  # both orders of each
    judgments = list(Judgment.objects.filter(source=Source.AI).select_related("chosen"))
    assert len(judgments) == 3
    for judgment in judgments:
        assert judgment.annotator == judge.account
        assert judgment.chosen is not None and judgment.chosen.text.startswith("GOOD")
        assert judgment.choice == Choice.LEFT  # A is shown on the left
        assert judgment.ai_verdict.consistent is True
    # No person's slot taken, no count moved.
    assert counters(batch) == before
    verdict = Verdict.objects.first()
    assert verdict is not None
    assert verdict.template_version == judge.template_version and len(judge.template_version) == 12
    assert "[[A]]" in verdict.raw_first and "[[B]]" in verdict.raw_second
    assert verdict.first == {"overall": {"option": "a", "strength": None}, "criteria": {}}
    assert verdict.second == {"overall": {"option": "b", "strength": None}, "criteria": {}}
    assert verdict.outcome is not None and verdict.outcome["option"] == "a"
    assert job.prompt_tokens > 0 and job.cost > 0
    # Its account is a member of role "ai" that cannot log in.
    membership = Membership.objects.get(user=judge.account)
    assert membership.role == Role.AI
    assert not judge.account.has_usable_password()
    assert [e.details["status"] for e in events("judging_ended")] == ["done"]
    assert events("judge_saved")[0].details["created"] is True


def test_orders_that_disagree_are_inconsistent_or_a_tie_as_the_judge_says(
    project: Project, bob: User, judge_llm: Any, run: Any
) -> None:
    llm, server = judge_llm
    server.reply = always_first
    batch = good_and_bad(project, n=2)
    judge = make_judge(project, llm, bob, disagreement="inconsistent")
    job = run(judge, batch)
    assert (job.comparisons_done, job.inconsistent) == (2, 2)
    assert not Judgment.objects.filter(source=Source.AI).exists()
    assert set(Verdict.objects.values_list("consistent", flat=True)) == {False}

    tying = make_judge(project, llm, bob, name="tying judge", disagreement="tie")
    run(tying, batch)
    assert list(
        Judgment.objects.filter(annotator=tying.account).values_list("choice", flat=True)
    ) == [Choice.TIE, Choice.TIE]


def test_an_unparsable_reply_is_asked_again_once_then_recorded_as_failed(
    project: Project, bob: User, judge_llm: Any, run: Any
) -> None:
    llm, server = judge_llm
    replies = iter(["I think the first one.", "[[A]]"])

    def once_vague(messages: list[dict[str, Any]]) -> str:
        return next(replies, None) or truthful(messages)

    server.reply = once_vague
    batch = good_and_bad(project, n=1)
    judge = make_judge(project, llm, bob)
    job = run(judge, batch)
    assert job.comparisons_done == 1
    verdict = Verdict.objects.get()
    assert verdict.raw_first.startswith("I think the first one.\n\n---\n\n[[A]]")
    assert len(llm.chat_requests()) == 3

    server.reply = lambda messages: "Both are fine, I cannot decide."
    second = make_judge(project, llm, bob, name="vague judge")
    job = run(second, batch)
    assert job.status == JudgeJobStatus.DONE
    assert (job.comparisons_done, job.comparisons_failed) == (0, 1)
    assert "1 comparison(s) failed" in job.note
    failed = Verdict.objects.get(judge=second)
    assert failed.failure == "unparsable" and "No verdict token" in failed.detail
    assert failed.judgment is None
    assert not Judgment.objects.filter(annotator=second.account).exists()

    server.reply = truthful
    job = judging_resume_now(job, bob)
    assert (job.comparisons_done, job.comparisons_failed) == (1, 0)
    assert Judgment.objects.filter(annotator=second.account).count() == 1


def judging_resume_now(job: JudgeJob, by: User) -> JudgeJob:
    judging_resume(job=job, by=by)
    judging_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_a_graded_project_s_judge_gives_strengths_and_the_weaker_of_two_orders(
    alice: User, bob: User, judge_llm: Any, run: Any
) -> None:
    llm, server = judge_llm
    graded = project_create(slug="graded", name="Graded", created_by=alice, scheme=Scheme.GRADED)
    membership_add(project=graded, user=bob, role="lead")
    seen: list[int] = []

    def graded_reply(messages: list[dict[str, Any]]) -> str:
        seen.append(1)
        good_first = first_shown_is_good(messages)
        # As shown: A much better; swapped: B better (one step less).
        return "[[A>>>B]]" if good_first else "[[B>>A]]"

    server.reply = graded_reply
    batch = good_and_bad(graded, n=1)
    run(make_judge(graded, llm, bob), batch)
    judgment = Judgment.objects.get(source=Source.AI)
    assert judgment.strength == 2  # the weaker of +3 and +2, positive: A (GOOD) is better


def test_criteria_are_judged_line_by_line(alice: User, bob: User, judge_llm: Any, run: Any) -> None:
    llm, server = judge_llm
    project = project_create(
        slug="crit",
        name="Crit",
        created_by=alice,
        criteria=[{"name": "helpfulness", "description": ""}, {"name": "safety"}],
    )
    membership_add(project=project, user=bob, role="lead")

    def lines(messages: list[dict[str, Any]]) -> str:
        good = "A" if first_shown_is_good(messages) else "B"
        return f"helpfulness: [[{good}]]\nsafety: [[C]]\nOverall: [[{good}]]"

    server.reply = lines
    batch = good_and_bad(project, n=1)
    run(make_judge(project, llm, bob), batch)
    judgment = Judgment.objects.get(source=Source.AI)
    assert judgment.criteria == {
        "helpfulness": {"option": "a", "strength": None},
        "safety": {"option": "tie", "strength": None},
    }


def test_a_judge_that_counts_takes_its_work_through_the_queue(
    project: Project, bob: User, judge_llm: Any, run: Any
) -> None:
    llm, _ = judge_llm
    batch = good_and_bad(project, n=2)
    judge = make_judge(project, llm, bob, counts_toward_overlap=True)
    job = run(judge, batch)
    assert job.status == JudgeJobStatus.DONE, job.note
    assert counters(batch) == [(1, 0, 1, 0, False), (1, 0, 1, 0, False)]
    judgments = Judgment.objects.filter(annotator=judge.account)
    assert judgments.count() == 2
    assert set(judgments.values_list("source", flat=True)) == {Source.AI}
    assert all(
        j.chosen is not None and j.chosen.text.startswith("GOOD")
        for j in judgments.select_related("chosen")
    )


def test_only_leads_and_staff_manage_judges_and_the_settings_are_checked(
    project: Project,
    bob: User,
    alice: User,
    annotators: list[User],
    judge_llm: Any,
    no_worker: Any,
) -> None:
    llm, _ = judge_llm
    with pytest.raises(Forbidden):
        make_judge(project, llm, annotators[0])
    judge = make_judge(project, llm, bob)
    batch = good_and_bad(project, n=1)
    with pytest.raises(Forbidden):
        judging_start(judge=judge, batch=batch, by=annotators[0])
    other = project_create(slug="other-p", name="Other", created_by=alice)
    with pytest.raises(JudgeInvalid, match="batch of the judge's project"):
        judging_start(judge=judge, batch=good_and_bad(other, n=1), by=bob)
    job = judging_start(judge=judge, batch=batch, by=bob)
    with pytest.raises(Conflict, match="wait for it, or cancel it"):
        judging_start(judge=judge, batch=batch, by=bob)
    assert judging_cancel(job=job, by=bob).status == JudgeJobStatus.CANCELLED
    assert judging_run(job_id=job.pk) == JudgeJobStatus.CANCELLED  # a late delivery: nothing
    assert not Verdict.objects.exists()
    listwise = project_create(
        slug="ranked", name="Ranked", created_by=alice, scheme=Scheme.LISTWISE
    )
    membership_add(project=listwise, user=bob, role="lead")
    with pytest.raises(JudgeInvalid, match="listwise project cannot have an AI judge yet"):
        make_judge(listwise, llm, bob)
    with pytest.raises(JudgeInvalid, match="placeholder"):
        make_judge(project, llm, bob, name="broken", user_prompt="Judge {nothing}.")
    # A judge cannot be moved to another project, even one its lead also leads.
    judge.project = other
    membership_add(project=other, user=bob, role="lead")
    with pytest.raises(JudgeInvalid, match="stays in its project"):
        judge_save(judge, by=bob)
    judge.refresh_from_db()
    assert judge.project == project
    no_ties = project_create(slug="no-ties", name="No ties", created_by=alice, allow_tie=False)
    membership_add(project=no_ties, user=bob, role="lead")
    with pytest.raises(JudgeInvalid):
        make_judge(no_ties, llm, bob, disagreement="tie")


def test_the_people_s_api_shows_nothing_of_the_ai_s_verdict(
    project: Project, bob: User, annotators: list[User], judge_llm: Any, run: Any
) -> None:
    llm, _ = judge_llm
    batch = good_and_bad(project, n=1)
    run(make_judge(project, llm, bob), batch)
    response = api_client_for(annotators[0]).post(
        f"/api/v1/projects/{project.slug}/assignments/next/"
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "[[" not in text and "ai" not in response.json() and "verdict" not in text
    page = Client()
    page.force_login(annotators[1])
    shown = page.get(f"/p/{project.slug}/")
    assert shown.status_code == 200
    html = shown.content.decode()
    assert "GOOD answer 0" in html  # the comparison the AI judged is on the page
    assert "[[A]]" not in html and "The first is better" not in html and "suggests" not in html


def test_the_ai_s_suggestion_shows_only_where_the_project_turns_it_on_and_is_recorded(
    project: Project, bob: User, annotators: list[User], judge_llm: Any, run: Any
) -> None:
    llm, _ = judge_llm
    batch = good_and_bad(project, n=1)
    judge = make_judge(project, llm, bob)
    run(judge, batch)
    page = Client()
    page.force_login(annotators[0])
    html = page.get(f"/p/{project.slug}/").content.decode()
    assert "suggests" not in html
    lease = Assignment.objects.get(annotator=annotators[0], status="open")
    page.post(
        f"/p/{project.slug}/a/{lease.pk}/",
        {"choice": "left", "idempotency_key": "k1"},
    )
    first = Judgment.objects.get(annotator=annotators[0])
    assert first.ai_suggestion_shown is False

    project.show_ai_suggestion = True
    project.save(update_fields=["show_ai_suggestion"])
    other = Client()
    other.force_login(annotators[1])
    html = other.get(f"/p/{project.slug}/").content.decode()
    lease = Assignment.objects.get(annotator=annotators[1], status="open")
    side = "left" if lease.left_id == lease.comparison.candidate_a_id else "right"
    assert f"AI judge gpt judge suggests: the {side} response is better" in html
    other.post(
        f"/p/{project.slug}/a/{lease.pk}/",
        {"choice": "left", "idempotency_key": "k2"},
    )
    second = Judgment.objects.get(annotator=annotators[1])
    assert second.ai_suggestion_shown is True
    # The API never shows it.
    response = api_client_for(annotators[2]).post(
        f"/api/v1/projects/{project.slug}/assignments/next/"
    )
    assert "suggest" not in response.content.decode()


def test_people_get_first_the_comparisons_the_ai_was_unsure_of(
    project: Project, bob: User, annotators: list[User], judge_llm: Any, run: Any
) -> None:
    llm, server = judge_llm
    batch = good_and_bad(project, n=6)
    unsure = set(
        Comparison.objects.filter(batch=batch)
        .order_by("pk")[:3]
        .values_list("prompt__external_id", flat=True)
    )

    def half_sure(messages: list[dict[str, Any]]) -> str:
        text = messages[-1]["content"]
        if any(f"Question {p[1:]}?" in text for p in unsure):
            return "[[A]]"  # the first shown, whatever it is: the orders disagree
        return truthful(messages)

    server.reply = half_sure
    run(make_judge(project, llm, bob), batch)
    assert Verdict.objects.filter(consistent=False).count() == 3
    served = []
    for annotator in annotators:
        lease = assignment_next(project=project, annotator=annotator)
        assert lease is not None
        served.append(lease.comparison.prompt.external_id)
    assert set(served) <= unsure


def test_invalidating_a_person_never_counts_the_ai_s_vote(
    project: Project, bob: User, annotators: list[User], judge_llm: Any, run: Any
) -> None:
    from apps.judging.queue import judgment_submit, judgments_invalidate

    llm, _ = judge_llm
    batch = good_and_bad(project, n=1)
    run(make_judge(project, llm, bob), batch)
    lease = assignment_next(project=project, annotator=annotators[0])
    assert lease is not None
    judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    judgments_invalidate(project=project, annotator=annotators[0], actor=bob, reason="test")
    assert counters(batch) == [(0, 0, 0, 0, False)]
