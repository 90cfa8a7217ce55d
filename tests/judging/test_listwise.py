"""Listwise projects: 3-8 responses of a prompt ranked as a whole, ties where allowed."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.batches.import_format import ImportFormatError
from apps.batches.models import Candidate, Comparison
from apps.judging.models import Assignment, Judgment
from apps.judging.queue import (
    JudgmentConflict,
    assignment_next,
    judgment_submit,
    judgment_undo,
    leases_reclaim_expired,
)
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"


def judge_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/judgment/"


@pytest.fixture
def listwise(project):
    project.scheme = "listwise"
    project.full_clean()
    project.save()
    return project


@pytest.fixture
def ranked(listwise, import_rows):
    return import_rows(prompt_line("r-1", n=4), prompt_line("r-2", n=3))


def test_a_listwise_import_makes_one_comparison_per_prompt(ranked):
    comparisons = Comparison.objects.order_by("id")
    assert [len(c.candidate_ids) for c in comparisons] == [4, 3]
    first = comparisons[0]
    ids = list(
        Candidate.objects.filter(prompt=first.prompt).order_by("id").values_list("id", flat=True)
    )
    assert first.candidate_ids == ids
    assert (first.candidate_a_id, first.candidate_b_id) == (ids[0], ids[1])
    assert ranked.comparison_count == 2


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (prompt_line("two", n=2), "ranks 3 to 8 responses per prompt; this prompt has 2"),
        (prompt_line("nine", n=9), "this prompt has 9"),
        (prompt_line("gold", n=3, gold={"preferred": "c1"}), "takes no gold items"),
    ],
)
def test_a_listwise_import_refuses_what_it_cannot_rank(listwise, import_rows, line, fragment):
    with pytest.raises(ImportFormatError) as caught:
        import_rows(prompt_line("fine", n=3), line)
    assert [(e.line, fragment in e.error) for e in caught.value.errors] == [(2, True)]
    assert not Comparison.objects.exists()


def test_a_listwise_project_takes_no_criteria(listwise):
    from django.core.exceptions import ValidationError

    listwise.criteria = [{"name": "helpfulness", "description": ""}]
    with pytest.raises(ValidationError, match="listwise"):
        listwise.full_clean()


def test_next_shows_every_response_in_a_recorded_shuffled_order(api, annotators, ranked):
    lease = api(annotators[0]).post(NEXT).json()
    shown = [c["id"] for c in lease["candidates"]]
    assignment = Assignment.objects.get(pk=lease["id"])
    order = [Candidate.objects.get(pk=pk).external_id for pk in assignment.shown_order]
    assert shown == order and sorted(shown) == sorted(set(shown))
    assert (lease["left"]["id"], lease["right"]["id"]) == (shown[0], shown[1])
    again = api(annotators[0]).post(NEXT).json()  # a reload: the same lease, the same order
    assert [c["id"] for c in again["candidates"]] == shown


def test_a_ranking_is_stored_as_given(api, annotators, ranked):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    shown = [c["id"] for c in lease["candidates"]]
    ranking = [shown[2], [shown[0], shown[3]], shown[1]] if len(shown) == 4 else shown[::-1]
    response = client.post(judge_url(lease["id"]), {"ranking": ranking}, format="json")
    assert response.status_code == 201, response.content
    groups = [g if isinstance(g, list) else [g] for g in ranking]
    assert response.json()["ranking"] == groups
    assert response.json()["choice"] == "ranking"
    judgment = Judgment.objects.get()
    by_external = dict(
        Candidate.objects.values_list("external_id", "id").filter(
            prompt__comparisons=lease["comparison"]
        )
    )
    assert judgment.ranking == [[by_external[e] for e in group] for group in groups]
    comparison = Comparison.objects.get(pk=lease["comparison"])
    assert (comparison.judgment_count, comparison.lease_count, comparison.votes_a) == (1, 0, 0)


def shown_of(client):
    lease = client.post(NEXT).json()
    return lease, [c["id"] for c in lease["candidates"]]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda s: s[:-1], "each response shown exactly once"),
        (lambda s: [*s, s[0]], "each response shown exactly once"),
        (lambda s: [*s[:-1], "no-such-id"], "each response shown exactly once"),
        (lambda s: [s[0], [], *s[1:]], "Each place of the ranking"),
        (lambda s: "c1", "ranking must be a list"),
        (lambda s: [s[0], s[1:]], "takes no ties"),
    ],
)
def test_bad_rankings_are_refused_and_lose_nothing(api, annotators, ranked, make, fragment):
    ranked.project.allow_tie = False
    ranked.project.save()
    client = api(annotators[0])
    lease, shown = shown_of(client)
    response = client.post(judge_url(lease["id"]), {"ranking": make(shown)}, format="json")
    assert response.status_code == 400, response.content
    assert fragment in str(response.json())
    assert not Judgment.objects.exists()
    assert client.post(judge_url(lease["id"]), {"ranking": shown}, format="json").status_code == 201


def test_a_choice_is_refused_in_a_listwise_project_and_a_ranking_in_a_pairwise_one(
    api, annotators, project, import_rows
):
    import_rows(prompt_line("pair"))
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"]), {"ranking": ["c1", "c2"]}, format="json")
    assert response.status_code == 400 and "compares pairs" in str(response.json())
    Comparison.objects.update(complete=True)
    project.scheme = "listwise"
    project.save()
    import_rows(prompt_line("list", n=3))
    client.post(f"/api/v1/assignments/{lease['id']}/skip/", {"reason": "other", "note": "x"})
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 400 and "ranks all the responses" in str(response.json())


def test_rankings_fill_the_overlap_and_undo_takes_one_back(api, annotators, ranked):
    comparison_id = None
    for user in annotators:
        client = api(user)
        lease, shown = shown_of(client)
        comparison_id = comparison_id or lease["comparison"]
        if lease["comparison"] != comparison_id:
            continue
        client.post(judge_url(lease["id"]), {"ranking": shown}, format="json")
    comparison = Comparison.objects.get(pk=comparison_id)
    judged = comparison.judgment_count
    undo = judgment_undo(project=ranked.project, annotator=annotators[0])
    comparison.refresh_from_db()
    assert comparison.judgment_count == judged - 1 and not comparison.complete
    assert undo.assignment.shown_order is not None


def test_the_page_ranks_by_places_without_javascript(annotators, ranked):
    browser = Client()
    browser.force_login(annotators[0])
    html = browser.get("/p/demo/").content.decode()
    lease = re.search(r'data-assignment="(\d+)"', html).group(1)
    count = html.count('class="rank-item"')
    assert count in (3, 4)
    for candidate in Candidate.objects.all():  # nothing names a response but its position
        assert f'"{candidate.external_id}"' not in html
    places = {f"rank:{position}": str(count + 1 - position) for position in range(1, count + 1)}
    places["rank:1"] = places["rank:2"]  # a tie: the project allows them
    response = browser.post(f"/p/demo/a/{lease}/", places)
    assert response.status_code == 302
    judgment = Judgment.objects.get()
    order = Assignment.objects.get(pk=lease).shown_order
    assert judgment.ranking[-1] == [order[0], order[1]]  # tied last
    assert judgment.ranking[0] == [order[-1]]


def test_a_late_ranking_goes_into_a_free_slot_only(listwise, annotators, import_rows):
    """A ranking takes the ORM path on PostgreSQL too: the late rule (LATE_REFUSAL) runs there
    through a cursor, with the comparison locked."""
    import_rows(prompt_line("only", n=3))
    listwise.overlap = 1
    listwise.save()
    past = timezone.now() - timedelta(hours=1)
    late = assignment_next(project=listwise, annotator=annotators[0], now=past)
    ranking = ["c1", "c2", "c3"]
    leases_reclaim_expired()
    taker = assignment_next(project=listwise, annotator=annotators[1])
    judgment_submit(assignment_id=taker.pk, annotator=annotators[1], ranking=ranking)
    with pytest.raises(JudgmentConflict, match="expired"):
        judgment_submit(assignment_id=late.pk, annotator=annotators[0], ranking=ranking)
    listwise.overlap = 2
    listwise.save()
    assert judgment_submit(assignment_id=late.pk, annotator=annotators[0], ranking=ranking).created
    assert Comparison.objects.get().judgment_count == 2
