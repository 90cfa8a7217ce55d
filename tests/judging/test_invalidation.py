"""Invalidating a spammer's judgments: kept and marked, no longer counted, comparisons reopened."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.batches.models import Comparison
from apps.judging.models import Judgment
from apps.judging.queue import (
    JudgmentConflict,
    assignment_next,
    judgment_submit,
    judgment_undo,
    judgments_invalidate,
)
from apps.projects.services import membership_add
from tests.conftest import prompt_line


def judge_all(project, user, choice="left", limit=None) -> int:
    done = 0
    while (limit is None or done < limit) and (
        lease := assignment_next(project=project, annotator=user)
    ):
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
        done += 1
    return done


def counts_match_valid_judgments() -> None:
    for c in Comparison.objects.all():
        valid = Judgment.objects.filter(comparison=c, invalidated_at__isnull=True)
        a = valid.filter(chosen_id=c.candidate_a_id).count()
        b = valid.filter(chosen_id=c.candidate_b_id).count()
        assert (c.judgment_count, c.votes_a, c.votes_b) == (valid.count(), a, b), c.pk
        assert c.votes_tie == valid.filter(choice="tie").count()
        assert c.split == (abs(a - b) if valid.exists() else 1)
        assert c.complete == (valid.count() >= c.project.overlap)
        assert c.judgment_count + c.lease_count <= c.project.overlap


@pytest.fixture
def spammer(make_user, project):
    user = make_user("spam")
    membership_add(project=project, user=user, role="annotator")
    return user


@pytest.fixture
def dan(make_user, project):
    user = make_user("dan")
    membership_add(project=project, user=user, role="annotator")
    return user


def test_invalidated_judgments_are_kept_marked_and_their_comparisons_reopen(
    project, annotators, spammer, dan, bob, import_rows
):
    import_rows(prompt_line("p-1"), prompt_line("p-2"))
    assert judge_all(project, spammer, "tie") == 2
    judge_all(project, annotators[0], "left")
    judge_all(project, annotators[1], "left")
    assert Comparison.objects.filter(complete=True).count() == 2
    assert assignment_next(project=project, annotator=dan) is None

    result = judgments_invalidate(
        project=project, annotator=spammer, actor=bob, reason="ties everything in 2 seconds"
    )
    assert (result.judgments, result.comparisons, result.reopened) == (2, 2, 2)
    marked = Judgment.objects.filter(annotator=spammer)
    assert marked.count() == 2  # kept, not deleted
    assert {(j.invalidated_by, j.invalidation_reason) for j in marked} == {
        (bob, "ties everything in 2 seconds")
    }
    assert all(j.invalidated_at is not None for j in marked)
    from apps.audit.models import AuditEvent

    event = AuditEvent.objects.get(action="judgments_invalidated")
    assert (event.actor, event.project, event.target_repr) == (bob, project, "spam")
    assert event.details["reason"] == "ties everything in 2 seconds"
    assert (event.details["judgments"], event.details["reopened"]) == (2, 2)
    for c in Comparison.objects.all():
        assert (c.judgment_count, c.votes_tie, c.complete) == (2, 0, False)
    counts_match_valid_judgments()
    # Someone else may vote again; the spammer is not given them back.
    assert assignment_next(project=project, annotator=spammer) is None
    assert judge_all(project, dan, "right") == 2
    assert Comparison.objects.filter(complete=True).count() == 2
    counts_match_valid_judgments()


def test_invalidation_needs_a_reason_and_running_it_twice_changes_nothing(
    project, spammer, bob, import_rows
):
    import_rows(prompt_line("p-1"))
    judge_all(project, spammer)
    with pytest.raises(ValueError, match="reason"):
        judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="  ")
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()
    first = judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="spam")
    stamp = Judgment.objects.get().invalidated_at
    again = judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="again")
    assert (first.judgments, again.judgments) == (1, 0)
    judgment = Judgment.objects.get()
    assert (judgment.invalidated_at, judgment.invalidation_reason) == (stamp, "spam")


def test_invalidation_since_a_time_leaves_earlier_work_counted(project, spammer, bob, import_rows):
    import_rows(prompt_line("p-1"), prompt_line("p-2"), prompt_line("p-3"))
    judge_all(project, spammer, limit=1)
    first = Judgment.objects.get()
    Judgment.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=2))
    judge_all(project, spammer)
    result = judgments_invalidate(
        project=project,
        annotator=spammer,
        actor=bob,
        reason="went bad yesterday",
        since=timezone.now() - timedelta(days=1),
    )
    assert result.judgments == 2
    assert list(
        Judgment.objects.filter(invalidated_at__isnull=True).values_list("pk", flat=True)
    ) == [first.pk]
    assert Comparison.objects.get(pk=first.comparison_id).judgment_count == 1
    counts_match_valid_judgments()


def test_undo_never_takes_back_an_invalidated_judgment(project, spammer, bob, import_rows):
    import_rows(prompt_line("p-1"))
    judge_all(project, spammer)
    judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="spam")
    with pytest.raises(JudgmentConflict):
        judgment_undo(project=project, annotator=spammer)
    assert Judgment.objects.get().invalidated_at is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_invalidation_racing_many_submitting_threads_loses_and_doubles_nothing(
    project, spammer, bob, make_user, import_rows
):
    """16 threads judge while the spammer's votes are invalidated mid-way: every comparison's
    counts end equal to its valid judgments, and none takes more votes than the overlap."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(30)))  # 90 comparisons
    judge_all(project, spammer, "tie")
    crowd = [make_user(f"crowd-{i}") for i in range(16)]
    for user in crowd:
        membership_add(project=project, user=user, role="annotator")
    started = threading.Barrier(len(crowd) + 1)
    errors: list[BaseException] = []
    done: list[int] = []

    def work(user) -> None:
        # While the invalidation holds the comparisons' locks the queue answers "nothing free
        # right now" (it skips locked rows): ask again until 12 are judged or time runs out.
        try:
            started.wait()
            mine, deadline = 0, time.monotonic() + 30
            while mine < 12 and time.monotonic() < deadline:
                got = judge_all(project, user, "left", limit=12 - mine)
                mine += got
                if not got:
                    time.sleep(0.01)
            done.append(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(user,)) for user in crowd]
    for thread in threads:
        thread.start()
    started.wait()
    result = judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="spam")
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert result.judgments == 90
    # Every stored judgment of the crowd was counted once; the spammer's are all invalid.
    assert Judgment.objects.filter(invalidated_at__isnull=True).count() == sum(done) == 16 * 12
    assert not Judgment.objects.filter(annotator=spammer, invalidated_at__isnull=True).exists()
    counts_match_valid_judgments()


INVALIDATE = "/admin/judging/judgment/invalidate/"


def test_a_lead_previews_then_invalidates_an_annotators_judgments_in_the_admin(
    client, project, spammer, bob, import_rows
):
    import_rows(prompt_line("p-1"), prompt_line("p-2"))
    judge_all(project, spammer)
    client.force_login(bob)
    form = {"project": project.pk, "annotator": "spam", "reason": "always left, 1 s each"}
    preview = client.post(INVALIDATE, form)
    assert preview.status_code == 200
    assert "This invalidates <strong>2</strong> judgments on <strong>2</strong>" in (
        preview.content.decode()
    )
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()
    done = client.post(INVALIDATE, {**form, "confirm": "1"})
    assert done.status_code == 302
    assert {(j.invalidated_by, j.invalidation_reason) for j in Judgment.objects.all()} == {
        (bob, "always left, 1 s each")
    }
    listing = client.get(f"/admin/judging/judgment/?valid=no&annotator__id__exact={spammer.pk}")
    assert listing.status_code == 200 and "2 judgments" in listing.content.decode()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"annotator": "nobody"}, "is not a member"),
        ({"reason": "   "}, "This field is required"),
        ({"since": "yesterday"}, "Enter a valid date/time"),
        ({"project": "999"}, "Select a valid choice"),
    ],
)
def test_the_invalidate_form_refuses_bad_input_and_changes_nothing(
    client, project, spammer, bob, import_rows, change, named
):
    import_rows(prompt_line("p-1"))
    judge_all(project, spammer)
    client.force_login(bob)
    form = {"project": project.pk, "annotator": "spam", "reason": "spam", "confirm": "1"}
    response = client.post(INVALIDATE, {**form, **change})
    assert response.status_code == 200 and named in response.content.decode()
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()


def test_another_projects_lead_and_annotators_cannot_invalidate(
    client, project, spammer, make_user, import_rows, annotators
):
    from apps.projects.services import project_create

    import_rows(prompt_line("p-1"))
    judge_all(project, spammer)
    dora = make_user("dora")
    membership_add(project=project_create(slug="other", name="Other"), user=dora, role="lead")
    client.force_login(dora)
    response = client.post(
        INVALIDATE, {"project": project.pk, "annotator": "spam", "reason": "x", "confirm": "1"}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    client.force_login(annotators[0])
    response = client.post(
        INVALIDATE, {"project": project.pk, "annotator": "spam", "reason": "x", "confirm": "1"}
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()


def test_the_list_action_invalidates_the_selected_judgments_with_a_reason(
    client, project, spammer, annotators, bob, import_rows
):
    import_rows(prompt_line("p-1"), prompt_line("p-2"))
    judge_all(project, spammer)
    judge_all(project, annotators[0])
    chosen = list(Judgment.objects.filter(annotator=spammer).values_list("pk", flat=True))[:1]
    client.force_login(bob)
    base = {"action": "invalidate_selected", "_selected_action": chosen}
    asked = client.post("/admin/judging/judgment/", base)
    assert asked.status_code == 200 and "Invalidate <strong>1</strong>" in asked.content.decode()
    refused = client.post("/admin/judging/judgment/", {**base, "reason": " "})
    assert "This field is required" in refused.content.decode()
    assert not Judgment.objects.filter(invalidated_at__isnull=False).exists()
    done = client.post("/admin/judging/judgment/", {**base, "reason": "copy-paste rationale"})
    assert done.status_code == 302
    assert (
        list(Judgment.objects.filter(invalidated_at__isnull=False).values_list("pk", flat=True))
        == chosen
    )
    counts_match_valid_judgments()


def test_exports_and_statistics_leave_invalidated_judgments_out(
    api, project, annotators, spammer, bob, import_rows
):
    """Three honest votes for candidate A and the spammer's for B on each comparison: with the
    spammer counted, agreement is 3/4; without, every vote agrees."""
    from tests.exports.test_exports import URL, rows

    def vote_for(user, option: str) -> None:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            wanted = getattr(lease.comparison, f"candidate_{option}_id")
            side = "left" if lease.left_id == wanted else "right"
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=side)

    import_rows(prompt_line("p-1"), prompt_line("p-2"))
    project.overlap = 4
    project.save()
    vote_for(spammer, "b")
    for user in annotators:
        vote_for(user, "a")
    client = api(bob)

    def export(format: str, **params: str) -> list[dict]:
        return rows(client.get(URL, {"format": format, **params}))

    def stats() -> dict:
        return client.get(f"/api/v1/projects/{project.slug}/stats/").json()

    assert len(export("judgments")) == len(export("arena")) == 8
    assert {r["agreement"] for r in export("trl")} == {0.75}
    assert stats()["counts"]["judgments"] == 8
    judgments_invalidate(project=project, annotator=spammer, actor=bob, reason="spam")
    assert len(export("judgments")) == len(export("arena")) == 6
    assert {(r["agreement"], r["n_annotators"]) for r in export("trl")} == {(1.0, 3)}
    assert len(export("trl", aggregate="reliability")) == 2
    assert stats()["counts"]["judgments"] == 6
    assert len(stats()["annotators"]) == 3
    listed = client.get(f"/api/v1/projects/{project.slug}/judgments/").json()
    assert len(listed["results"]) == 6
