"""Submitting judgments: the REST contract, idempotency, conflicts and bad input."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.judging.queue import (
    IdempotencyConflict,
    JudgmentConflict,
    assignment_next,
    judgment_submit,
    leases_reclaim_expired,
)
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"


def judge_url(assignment_id: int) -> str:
    return f"/api/v1/assignments/{assignment_id}/judgment/"


@pytest.fixture
def lease(api, annotators, batch) -> dict:
    return api(annotators[0]).post(NEXT).json()


def test_it_stores_a_judgment(api, annotators, lease):
    body = {"choice": "right", "rationale": "More accurate.", "duration_ms": 4200}
    response = api(annotators[0]).post(judge_url(lease["id"]), body, format="json")
    assert response.status_code == 201, response.content
    stored = Judgment.objects.get()
    assert response.json() == {
        "id": stored.pk,
        "assignment": lease["id"],
        "comparison": lease["comparison"],
        "choice": "right",
        "chosen_id": lease["right"]["id"],
        "strength": None,
        "criteria": {},
        "flags": [],
        "ranking": None,
        "guideline_version": 1,
        "rationale": "More accurate.",
        "duration_ms": 4200,
        "idempotency_key": "",
        "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert stored.chosen.external_id == lease["right"]["id"]
    assert (stored.choice, stored.rationale, stored.duration_ms) == (
        "right",
        "More accurate.",
        4200,
    )
    assert stored.left.external_id == lease["left"]["id"]
    comparison = Comparison.objects.get(pk=lease["comparison"])
    assert (comparison.judgment_count, comparison.lease_count) == (1, 0)
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.SUBMITTED


@pytest.mark.parametrize("choice", ["tie", "both_bad"])
def test_it_stores_no_winner_for_tie_and_both_bad(api, annotators, lease, choice):
    response = api(annotators[0]).post(judge_url(lease["id"]), {"choice": choice}, format="json")
    assert response.status_code == 201
    assert response.json()["chosen_id"] is None


def test_a_retry_with_the_same_key_returns_the_same_body(api, annotators, lease):
    client = api(annotators[0])
    body = {"choice": "left", "idempotency_key": "k-123"}
    first = client.post(judge_url(lease["id"]), body, format="json")
    again = client.post(judge_url(lease["id"]), body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Judgment.objects.count() == 1
    assert Comparison.objects.get(pk=lease["comparison"]).judgment_count == 1


def test_a_second_submission_without_the_key_is_a_conflict(api, annotators, lease):
    client = api(annotators[0])
    assert client.post(judge_url(lease["id"]), {"choice": "left"}, format="json").status_code == 201
    response = client.post(judge_url(lease["id"]), {"choice": "right"}, format="json")
    assert response.status_code == 409
    assert "already" in response.json()["detail"]
    assert Judgment.objects.get().choice == "left"


def test_another_annotators_assignment_is_not_found(api, annotators, lease):
    response = api(annotators[1]).post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 404
    assert api(annotators[0]).post(judge_url(999999), {"choice": "left"}).status_code == 404
    assert Judgment.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"choice": "middle"},
        {"choice": ""},
        {},
        {"choice": ["left"]},
        {"choice": "left", "duration_ms": -1},
        {"choice": "left", "duration_ms": "soon"},
        {"choice": "left", "rationale": "x" * 10_001},
        {"choice": "left", "rationale": "nul \u0000 byte"},
        {"choice": "left", "idempotency_key": "k" * 129},
    ],
)
def test_it_rejects_bad_input_with_400(api, annotators, lease, body):
    response = api(annotators[0]).post(judge_url(lease["id"]), body, format="json")
    assert response.status_code == 400, response.content
    assert Judgment.objects.count() == 0
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.OPEN


def test_it_rejects_a_malformed_json_body(api, annotators, lease):
    response = api(annotators[0]).post(
        judge_url(lease["id"]), b"{choice: left", content_type="application/json"
    )
    assert response.status_code == 400


def test_it_refuses_choices_the_project_does_not_offer(api, project, annotators, lease):
    project.allow_tie = False
    project.allow_both_bad = False
    project.save()
    client = api(annotators[0])
    for choice in ("tie", "both_bad"):
        response = client.post(judge_url(lease["id"]), {"choice": choice}, format="json")
        assert response.status_code == 400
        assert "left, right" in response.json()["detail"]


def test_a_late_judgment_still_holding_its_slot_is_taken(project, annotators, batch):
    past = timezone.now() - timedelta(hours=1)
    lease = assignment_next(project=project, annotator=annotators[0], now=past)
    result = judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    assert result.created
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert (comparison.judgment_count, comparison.lease_count) == (1, 0)


def test_a_late_judgment_after_reclaim_is_taken_into_a_free_slot(project, annotators, batch):
    past = timezone.now() - timedelta(hours=1)
    lease = assignment_next(project=project, annotator=annotators[0], now=past)
    leases_reclaim_expired()
    judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="right")
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert (comparison.judgment_count, comparison.lease_count) == (1, 0)


def test_a_late_judgment_is_refused_when_the_comparison_is_full(
    api, project, annotators, make_user, import_rows
):
    import_rows(prompt_line("only"))
    project.overlap = 1
    project.save()
    past = timezone.now() - timedelta(hours=1)
    late = assignment_next(project=project, annotator=annotators[0], now=past)
    leases_reclaim_expired()
    taker = assignment_next(project=project, annotator=annotators[1])
    judgment_submit(assignment_id=taker.pk, annotator=annotators[1], choice="left")
    response = api(annotators[0]).post(judge_url(late.pk), {"choice": "left"}, format="json")
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]
    assert Comparison.objects.get().judgment_count == 1


def test_one_judgment_per_annotator_even_across_two_leases(project, annotators, import_rows):
    import_rows(prompt_line("only"))
    past = timezone.now() - timedelta(hours=1)
    old = assignment_next(project=project, annotator=annotators[0], now=past)
    new = assignment_next(project=project, annotator=annotators[0])  # reclaims, re-leases
    assert new.comparison_id == old.comparison_id and new.pk != old.pk
    judgment_submit(assignment_id=new.pk, annotator=annotators[0], choice="left")
    with pytest.raises(JudgmentConflict):
        judgment_submit(assignment_id=old.pk, annotator=annotators[0], choice="right")
    assert Judgment.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([{"choice": "left"}], "The body must be a JSON object"),
        ({"choice": "left", "duration_ms": "soon"}, "duration_ms must be a whole number"),
        ({"choice": "left", "idempotency_key": 7}, "idempotency_key must be a string"),
        ({"choice": "left", "rationale": ["a"]}, "rationale must be a string"),
        ({"choice": "left", "rationale": "x" * 10_001}, "longer than 10000"),
        ({"choice": "left", "idempotency_key": "k" * 129}, "at most 128 characters"),
        ({"choice": None}, "choice must be one of"),
    ],
)
def test_malformed_bodies_get_a_clear_400(api, annotators, lease, body, fragment):
    response = api(annotators[0]).post(judge_url(lease["id"]), body, format="json")
    assert response.status_code == 400, response.content
    assert fragment in response.json()["detail"]
    assert not Judgment.objects.exists()


def test_a_form_encoded_judgment_is_taken_too(api, annotators, lease):
    response = api(annotators[0]).post(
        judge_url(lease["id"]), {"choice": "right", "duration_ms": "900"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert Judgment.objects.get().duration_ms == 900


# -- an idempotency key reused with another answer --------------------------------------------

GRADED_FIRST = {
    "strength": -2,
    "criteria": {"accuracy": -1},
    "flags": ["unsafe"],
    "rationale": "The left one is right.",
    "idempotency_key": "k-graded",
}


@pytest.fixture
def graded_lease(api, project, annotators, batch) -> dict:
    project.scheme = "graded"
    project.criteria = [{"name": "accuracy", "description": "Is it correct?"}]
    project.flags = ["unsafe"]
    project.rationale = "optional"
    project.full_clean()
    project.save()
    return api(annotators[0]).post(NEXT).json()


@pytest.mark.parametrize(
    "change",
    [
        {"strength": 2},
        {"strength": -3},
        {"criteria": {"accuracy": 1}},
        {"flags": []},
        {"rationale": "On second thoughts."},
        {"rationale": ""},
    ],
    ids=["strength-side", "strength-grade", "criteria", "flags", "rationale", "no-rationale"],
)
def test_a_key_reused_with_another_answer_is_a_conflict_with_the_stored_judgment(
    api, annotators, graded_lease, change
):
    client = api(annotators[0])
    url = judge_url(graded_lease["id"])
    first = client.post(url, GRADED_FIRST, format="json")
    assert first.status_code == 201, first.content
    before = list(Judgment.objects.values())
    other = client.post(url, {**GRADED_FIRST, **change}, format="json")
    assert other.status_code == 409, other.content
    assert "different answer" in other.json()["detail"]
    assert other.json()["judgment"] == first.json()  # the first answer stands
    assert list(Judgment.objects.values()) == before  # nothing changed
    comparison = Comparison.objects.get(pk=graded_lease["comparison"])
    assert (comparison.judgment_count, comparison.lease_count) == (1, 0)


def test_a_key_reused_with_the_same_answer_is_a_retry(api, annotators, graded_lease):
    client = api(annotators[0])
    url = judge_url(graded_lease["id"])
    first = client.post(url, GRADED_FIRST, format="json")
    # The same answer with another time on task: duration_ms is a measurement, not the answer.
    again = client.post(url, {**GRADED_FIRST, "duration_ms": 999}, format="json")
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json() == first.json()
    assert Judgment.objects.count() == 1


def test_a_key_reused_with_another_choice_is_a_conflict(api, annotators, lease):
    client = api(annotators[0])
    body = {"choice": "left", "idempotency_key": "k-1"}
    first = client.post(judge_url(lease["id"]), body, format="json")
    other = client.post(judge_url(lease["id"]), {**body, "choice": "tie"}, format="json")
    assert (first.status_code, other.status_code) == (201, 409)
    assert other.json()["judgment"] == first.json()
    assert Judgment.objects.get().choice == "left"
    with pytest.raises(IdempotencyConflict) as refused:
        judgment_submit(
            assignment_id=lease["id"],
            annotator=annotators[0],
            choice="right",
            idempotency_key="k-1",
        )
    assert refused.value.stored.judgment.pk == first.json()["id"]
