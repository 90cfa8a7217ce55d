"""Adaptive stopping: a comparison whose votes for one side lead by the project's stop margin is
complete before its overlap, on both backends; undo, invalidation and a change of the stopping
confidence move it back; gold and listwise comparisons never stop early."""

import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditAction, AuditEvent
from apps.batches.models import Comparison
from apps.judging.models import Assignment, Judgment
from apps.judging.queue import (
    JudgmentConflict,
    assignment_next,
    judgment_submit,
    judgment_undo,
    judgments_invalidate,
    leases_reclaim_expired,
    overlap_changed,
)
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from apps.projects.stopping import posterior, stop_margin
from tests.conftest import prompt_line
from tests.judging.test_concurrency import run_threads
from tests.projects.test_admin import _project_form

# -- the margin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "margin"),
    [(None, 0), (0.5, 1), (0.8, 1), (0.85, 2), (0.9, 2), (0.95, 3), (0.99, 4), (0.999, 5)],
)
def test_it_gives_the_smallest_margin_whose_posterior_reaches_the_confidence(confidence, margin):
    assert stop_margin(confidence) == margin
    if confidence is not None and margin > 1:
        assert posterior(margin - 1) < confidence <= posterior(margin) + 1e-12


def test_it_refuses_a_confidence_outside_zero_and_one():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="below 1"):
            stop_margin(bad)


def test_a_project_keeps_its_margin_with_its_confidence(project):
    assert project.stop_margin == 0
    project.stop_confidence = 0.95
    project.save(update_fields=["stop_confidence"])
    project.refresh_from_db()
    assert project.stop_margin == 3
    project.stop_confidence = None
    project.save()
    assert Project.objects.get(pk=project.pk).stop_margin == 0


def test_the_margin_is_no_setting_of_the_creation_record(alice):
    project = project_create(slug="s", name="S", created_by=alice, stop_confidence=0.9)
    (event,) = AuditEvent.objects.filter(action=AuditAction.PROJECT_CREATED, project=project)
    assert event.details["stop_confidence"] == 0.9
    assert "stop_margin" not in event.details


def test_a_listwise_project_refuses_a_stopping_confidence(alice):
    with pytest.raises(ValidationError, match="listwise project has none") as info:
        project_create(slug="l", name="L", created_by=alice, scheme="listwise", stop_confidence=0.9)
    assert "stop_confidence" in info.value.message_dict
    assert not Project.objects.filter(slug="l").exists()


def test_the_admin_refuses_a_stopping_confidence_on_a_listwise_project(client, bob, project):
    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, scheme="listwise", stop_confidence="0.9"))
    assert response.status_code == 200
    assert "a listwise project has none" in response.content.decode()
    project.refresh_from_db()
    assert (project.scheme, project.stop_confidence) == ("pairwise", None)


# -- the queue -------------------------------------------------------------------------------


@pytest.fixture
def crowd(project, make_user):
    users = [make_user(f"crowd{i}") for i in range(8)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    return users


def stopping(project, confidence, overlap=5):
    project.overlap = overlap
    project.stop_confidence = confidence
    project.save()
    return project


def vote(project, user, option):
    """Leases the next comparison and votes: 'a' / 'b' for that candidate, or a choice."""
    lease = assignment_next(project=project, annotator=user)
    assert lease is not None
    choice = option
    if option in ("a", "b"):
        comparison = lease.comparison
        wanted = comparison.candidate_a_id if option == "a" else comparison.candidate_b_id
        choice = "left" if lease.left_id == wanted else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
    return lease


def state(comparison_id):
    c = Comparison.objects.get(pk=comparison_id)
    return (c.votes_a, c.votes_b, c.judgment_count, c.complete)


def test_a_comparison_whose_lead_reaches_the_margin_closes(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    stopping(project, 0.9)  # a margin of 2, an overlap of 5
    first = vote(project, crowd[0], "a")
    assert state(first.comparison_id) == (1, 0, 1, False)
    vote(project, crowd[1], "a")
    assert state(first.comparison_id) == (2, 0, 2, True)
    # Decided: the next annotator does not receive it, though 3 of its 5 slots are free.
    assert assignment_next(project=project, annotator=crowd[2]) is None


def test_ties_and_both_bad_count_for_neither_side(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    stopping(project, 0.9, overlap=6)
    first = vote(project, crowd[0], "a")
    vote(project, crowd[1], "tie")
    vote(project, crowd[2], "both_bad")
    vote(project, crowd[3], "b")
    vote(project, crowd[4], "a")
    assert state(first.comparison_id) == (2, 1, 5, False)
    vote(project, crowd[5], "a")
    assert state(first.comparison_id) == (3, 1, 6, True)


def test_without_stopping_a_comparison_takes_its_whole_overlap(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    stopping(project, None, overlap=4)
    for user in crowd[:3]:
        lease = vote(project, user, "a")
    assert state(lease.comparison_id) == (3, 0, 3, False)
    vote(project, crowd[3], "a")
    assert state(lease.comparison_id) == (4, 0, 4, True)


def test_undo_reopens_a_comparison_that_stopped_early(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    stopping(project, 0.9)
    vote(project, crowd[0], "a")
    second = vote(project, crowd[1], "a")
    assert state(second.comparison_id)[3]
    undone = judgment_undo(project=project, annotator=crowd[1])
    assert state(second.comparison_id) == (1, 0, 1, False)
    # Open again: another annotator gets it beside the undoer's lease.
    assert assignment_next(project=project, annotator=crowd[2]).comparison_id == (
        second.comparison_id
    )
    # The undoer answers anew, for the other side: 1-1, still open.
    judgment_submit(assignment_id=undone.assignment.pk, annotator=crowd[1], choice="tie")
    assert state(second.comparison_id) == (1, 0, 2, False)


def test_invalidation_reopens_a_comparison_that_stopped_early(project, crowd, import_rows, alice):
    import_rows(prompt_line("only"))
    stopping(project, 0.9)
    vote(project, crowd[0], "a")
    lease = vote(project, crowd[1], "a")
    result = judgments_invalidate(
        project=project, annotator=crowd[1], actor=alice, reason="careless"
    )
    assert result.reopened == 1
    assert state(lease.comparison_id) == (1, 0, 1, False)


def test_gold_items_never_stop(project, crowd, import_rows):
    project.gold_rate = 1.0
    stopping(project, 0.8)  # a margin of 1
    import_rows({**prompt_line("g"), "gold": {"preferred": "c1"}})
    for user in crowd[:6]:  # more than the overlap
        lease = vote(project, user, "a")
        assert lease.comparison.is_gold
    assert state(lease.comparison_id) == (6, 0, 6, False)


def test_listwise_comparisons_never_stop_early(project, crowd, import_rows, api):
    project.scheme = "listwise"
    project.save()
    import_rows(prompt_line("r", n=3))
    # Past the rule that refuses it (Project.clean): the queue still never stops a ranking.
    Project.objects.filter(pk=project.pk).update(overlap=3, stop_confidence=0.8, stop_margin=1)
    for user in crowd[:2]:
        client = api(user)
        lease = client.post("/api/v1/projects/demo/assignments/next/").json()
        shown = [c["id"] for c in lease["candidates"]]
        response = client.post(
            f"/api/v1/assignments/{lease['id']}/judgment/", {"ranking": shown}, format="json"
        )
        assert response.status_code == 201, response.content
    assert state(lease["comparison"]) == (0, 0, 2, False)


def test_a_change_of_the_confidence_closes_and_reopens(project, crowd, import_rows):
    import_rows(prompt_line("p1"), prompt_line("p2"))
    stopping(project, None)
    one_sided = vote(project, crowd[0], "a").comparison_id
    vote(project, crowd[1], "a")  # breadth first: the other comparison
    vote(project, crowd[2], "a")
    split = next(c for c in Comparison.objects.values_list("id", flat=True) if c != one_sided)
    vote_on = {one_sided: state(one_sided)[:2], split: state(split)[:2]}
    assert sorted(vote_on.values()) == [(1, 0), (2, 0)]
    stopping(project, 0.8)  # a margin of 1: both decided
    assert overlap_changed(project=project) == 2
    assert state(one_sided)[3] and state(split)[3]
    stopping(project, 0.9)  # a margin of 2: only the 2-0 one
    assert overlap_changed(project=project) == 1
    decided = {c for c in vote_on if state(c)[3]}
    assert decided == {c for c, votes in vote_on.items() if votes == (2, 0)}
    stopping(project, None)
    assert overlap_changed(project=project) == 1
    assert not Comparison.objects.filter(complete=True).exists()


def test_the_admin_reevaluates_when_the_confidence_changes(client, bob, project, import_rows):
    import_rows(prompt_line("only"))
    project.memberships.filter(role="annotator").delete()
    annotators = [User.objects.create_user(f"x{i}") for i in range(2)]
    for user in annotators:
        membership_add(project=project, user=user, role="annotator")
    for user in annotators:
        lease = vote(project, user, "a")
    assert state(lease.comparison_id) == (2, 0, 2, False)
    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, stop_confidence="0.9"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Project.objects.get(pk=project.pk).stop_margin == 2
    assert state(lease.comparison_id) == (2, 0, 2, True)
    response = client.post(url, _project_form(project, stop_confidence=""))
    assert response.status_code == 302
    assert state(lease.comparison_id) == (2, 0, 2, False)


def test_a_late_vote_on_a_comparison_that_stopped_early_is_refused(project, crowd, import_rows):
    """As a late vote on a comparison that has all its overlap's votes is: the reclaimed lease
    gave its slot back, and the comparison takes no more votes."""
    import_rows(prompt_line("only"))
    stopping(project, 0.9)
    past = timezone.now() - timedelta(hours=1)
    late = assignment_next(project=project, annotator=crowd[0], now=past)
    assert leases_reclaim_expired() == 1
    vote(project, crowd[1], "a")
    lease = vote(project, crowd[2], "a")
    assert state(lease.comparison_id)[3]
    with pytest.raises(JudgmentConflict, match="all the votes it needs"):
        judgment_submit(assignment_id=late.pk, annotator=crowd[0], choice="left")
    assert state(lease.comparison_id) == (2, 0, 2, True)


def test_an_open_lease_still_votes_on_a_comparison_that_stopped_early(project, crowd, import_rows):
    """A lease handed out before the comparison was decided holds its slot: its vote goes in,
    and the rule reads the new counts (here the lead falls to 1, and it reopens)."""
    import_rows(prompt_line("only"))
    stopping(project, 0.9)
    held = assignment_next(project=project, annotator=crowd[0])
    vote(project, crowd[1], "a")
    vote(project, crowd[2], "a")
    assert state(held.comparison_id) == (2, 0, 2, True)
    wanted = held.comparison.candidate_b_id
    choice = "left" if held.left_id == wanted else "right"
    judgment_submit(assignment_id=held.pk, annotator=crowd[0], choice=choice)
    assert state(held.comparison_id) == (2, 1, 3, False)
    assert Assignment.objects.filter(comparison_id=held.comparison_id).count() == 3


# -- races (PostgreSQL) ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_votes_leave_every_comparison_as_the_rule_says(project, make_user, import_rows):
    """Many threads vote on a few comparisons at once: none passes its overlap, and each ends
    complete exactly when its counts say so (the lead reached, or the overlap)."""
    assert connection.vendor == "postgresql"
    stopping(project, 0.95, overlap=9)  # a margin of 3
    import_rows(*(prompt_line(f"p{i}") for i in range(4)))
    users = [make_user(f"racer{i}") for i in range(16)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")

    def annotate(index: int) -> None:
        rng = random.Random(index)
        while (lease := assignment_next(project=project, annotator=users[index])) is not None:
            # Most votes for candidate A's screen side: leads build up and stop comparisons.
            to_a = rng.random() < 0.75
            left_is_a = lease.left_id == lease.comparison.candidate_a_id
            choice = "left" if to_a == left_is_a else "right"
            if rng.random() < 0.2:
                choice = "tie"
            judgment_submit(assignment_id=lease.pk, annotator=users[index], choice=choice)

    assert run_threads(annotate, len(users)) == []
    for c in Comparison.objects.all():
        votes = Judgment.objects.filter(comparison=c).count()
        assert c.judgment_count == votes <= 9, c.pk
        assert c.lease_count == 0
        decided = abs(c.votes_a - c.votes_b) >= 3
        assert c.complete == (decided or votes >= 9), (c.pk, c.votes_a, c.votes_b, votes)
    # A thread that found every slot leased may have stopped before a late vote of a lease
    # reopened a comparison (its lead fell): one more round, one annotator at a time, ends
    # every comparison complete.
    for index in range(len(users)):
        annotate(index)
    assert not Comparison.objects.filter(complete=False).exists()


# -- what it saved ---------------------------------------------------------------------------


@pytest.fixture
def saved(project, crowd, import_rows):
    """Two batches under a margin of 2 and an overlap of 5: the first's comparison stopped
    early at 2-0 (3 judgments saved), the second's is split 1-1."""
    stopping(project, 0.9)
    first = import_rows(prompt_line("p1"))
    vote(project, crowd[0], "a")
    vote(project, crowd[1], "a")
    second = import_rows(prompt_line("p2"))
    vote(project, crowd[2], "a")
    vote(project, crowd[3], "b")
    return first, second


def test_stats_report_the_comparisons_stopped_early_and_the_judgments_saved(api, bob, saved):
    first, second = saved
    response = api(bob).get("/api/v1/projects/demo/stats/")
    assert response.status_code == 200
    stopping = response.json()["stopping"]
    assert stopping["meaning"].startswith("adaptive stopping")
    assert {k: v for k, v in stopping.items() if k != "meaning"} == {
        "confidence": 0.9,
        "margin": 2,
        "stopped_early": 1,
        "judgments_saved": 3,
        "per_batch": [
            {"batch": first.pk, "comparisons": 1, "stopped_early": 1, "judgments_saved": 3},
            {"batch": second.pk, "comparisons": 1, "stopped_early": 0, "judgments_saved": 0},
        ],
    }
    one = api(bob).get("/api/v1/projects/demo/stats/", {"batch": second.pk}).json()["stopping"]
    assert (one["stopped_early"], one["judgments_saved"], len(one["per_batch"])) == (0, 0, 1)


def test_the_dashboard_and_the_card_say_what_stopping_saved(client, api, bob, saved):
    client.force_login(bob)
    page = client.get("/lead/p/demo/").content.decode()
    assert "1 comparison stopped early, 3 judgments saved." in page
    card = api(bob).get("/api/v1/projects/demo/export/", {"format": "card"}).content.decode()
    assert "a comparison stopped receiving votes once one side led by 2" in card
    assert "1 comparison stopped early, with fewer votes than the overlap; that saved 3" in card


def test_nothing_is_said_of_stopping_where_it_never_ran(client, api, bob, project, crowd, batch):
    vote(project, crowd[0], "a")
    client.force_login(bob)
    assert 'data-testid="stopping"' not in client.get("/lead/p/demo/").content.decode()
    card = api(bob).get("/api/v1/projects/demo/export/", {"format": "card"}).content.decode()
    assert "Adaptive stopping" not in card
    stopping = api(bob).get("/api/v1/projects/demo/stats/").json()["stopping"]
    assert (stopping["margin"], stopping["stopped_early"], stopping["judgments_saved"]) == (0, 0, 0)
