"""Undo: the last judgment comes back to be answered anew, and every count moves back."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.judging.queue import (
    JudgmentConflict,
    assignment_next,
    assignment_skip,
    judgment_submit,
    judgment_undo,
    leases_reclaim_expired,
    overlap_changed,
)
from apps.projects.models import Membership
from tests.conftest import prompt_line

UNDO = "/api/v1/projects/demo/judgments/undo/"


def counts(comparison_id):
    c = Comparison.objects.get(pk=comparison_id)
    return (c.judgment_count, c.lease_count, c.votes_a, c.votes_b, c.votes_tie, c.split, c.complete)


def member_counts(project, user):
    m = Membership.objects.get(project=project, user=user)
    return (m.judgment_count, m.gold_answered, m.gold_correct)


def test_undo_gives_the_comparison_back_on_the_same_sides(project, annotators, batch):
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    before = counts(lease.comparison_id)
    judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    held = assignment_next(project=project, annotator=user)  # the next one, now held
    result = judgment_undo(project=project, annotator=user)
    again = result.assignment
    assert again.comparison_id == lease.comparison_id
    assert (again.left_id, again.right_id) == (lease.left_id, lease.right_id)
    assert result.undone.choice == "left"
    assert not Judgment.objects.exists()
    assert counts(lease.comparison_id) == before  # no vote, one lease (its own)
    assert member_counts(project, user) == (0, 0, 0)
    # The lease held meanwhile is released, and its slot freed for others.
    held.refresh_from_db()
    assert held.status == AssignmentStatus.EXPIRED
    assert Comparison.objects.get(pk=held.comparison_id).lease_count == 0
    # The old lease can no longer be submitted or skipped; the new one is theirs to answer.
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.UNDONE
    with pytest.raises(JudgmentConflict, match="undone"):
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="right")
    with pytest.raises(JudgmentConflict, match="undone"):
        assignment_skip(assignment_id=lease.pk, annotator=user, reason="other", note="x")
    assert assignment_next(project=project, annotator=user).pk == again.pk
    judgment_submit(assignment_id=again.pk, annotator=user, choice="right")
    stored = Judgment.objects.get()
    assert stored.chosen_id == lease.right_id
    assert counts(lease.comparison_id)[:2] == (1, 0)


def test_a_complete_comparison_can_be_undone_only_for_a_few_minutes(
    project, annotators, import_rows
):
    import_rows(prompt_line("only"))
    project.overlap = 1
    project.save()
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert Comparison.objects.get(pk=lease.comparison_id).complete
    later = timezone.now() + timedelta(minutes=6)
    with pytest.raises(JudgmentConflict, match="no longer be changed"):
        judgment_undo(project=project, annotator=user, now=later)
    result = judgment_undo(project=project, annotator=user)
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert (comparison.complete, comparison.judgment_count, comparison.lease_count) == (False, 0, 1)
    assert result.assignment.comparison_id == comparison.pk


def test_an_undo_over_a_lowered_overlap_leaves_the_comparison_complete(
    project, annotators, import_rows
):
    """Two votes, the overlap lowered to 1, the second vote taken back: one valid vote is left,
    which still reaches the overlap, so the comparison stays complete, and stays so when the
    undoer's lease runs out and is reclaimed."""
    import_rows(prompt_line("only"))
    project.overlap = 2
    project.save()
    first, second = annotators[:2]
    for user in (first, second):
        lease = assignment_next(project=project, annotator=user)
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    project.overlap = 1
    project.save()
    assert overlap_changed(project=project) == 0  # complete at 2 already
    result = judgment_undo(project=project, annotator=second)
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert (comparison.complete, comparison.judgment_count, comparison.lease_count) == (True, 1, 1)
    later = result.assignment.expires_at + timedelta(seconds=1)
    assert leases_reclaim_expired(project_id=project.pk, now=later) == 1
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert (comparison.complete, comparison.judgment_count, comparison.lease_count) == (True, 1, 0)
    assert assignment_next(project=project, annotator=annotators[2]) is None


def test_an_open_comparison_can_be_undone_at_any_time(project, annotators, batch):
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    judgment_submit(assignment_id=lease.pk, annotator=user, choice="tie")
    later = timezone.now() + timedelta(hours=3)
    assert judgment_undo(project=project, annotator=user, now=later).undone.choice == "tie"
    assert Comparison.objects.get(pk=lease.comparison_id).votes_tie == 0


def test_undoing_a_gold_answer_takes_back_the_gold_accuracy(project, annotators, import_rows):
    import_rows(prompt_line("g", gold={"preferred": "c1"}))
    project.gold_rate = 1.0
    project.save()
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    assert lease.comparison.is_gold
    judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert member_counts(project, user)[1] == 1
    judgment_undo(project=project, annotator=user)
    assert member_counts(project, user) == (0, 0, 0)
    assert Comparison.objects.get(pk=lease.comparison_id).lease_count == 0  # gold: no slot


def test_there_is_nothing_to_undo_at_first_or_twice(api, project, annotators, batch):
    client = api(annotators[0])
    response = client.post(UNDO)
    assert response.status_code == 409
    assert "no judgment of yours" in response.json()["detail"]
    lease = client.post("/api/v1/projects/demo/assignments/next/").json()
    client.post(f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": "left"}, format="json")
    response = client.post(UNDO)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["comparison"] == lease["comparison"]
    assert (body["left"], body["right"]) == (lease["left"], lease["right"])
    assert body["undone"]["choice"] == "left"
    assert body["undone"]["chosen_id"] == lease["left"]["id"]
    assert client.post(UNDO).status_code == 409  # the judgment before it: none
    assert api(annotators[1]).post(UNDO).status_code == 409  # only one's own


def test_undo_on_the_page_shows_what_was_answered(project, annotators, batch):
    import re

    from django.test import Client

    browser = Client()
    browser.force_login(annotators[0])
    html = browser.get("/p/demo/").content.decode()
    assert "Undo my last judgment" not in html
    first = re.search(r'data-assignment="(\d+)"', html).group(1)
    browser.post(f"/p/demo/a/{first}/", {"choice": "right"})
    html = browser.post("/p/demo/undo/", headers={"HX-Request": "true"}).content.decode()
    assert "Undone: you had answered “Right is better”" in html
    assert Assignment.objects.get(pk=first).status == AssignmentStatus.UNDONE
