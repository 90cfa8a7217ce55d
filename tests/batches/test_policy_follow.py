"""A change of a project's policy reaches its comparisons: in the change's transaction for a
small project, after it in short chunks for a large one (apps.batches.policy_follow), with the
beat sweep sending a follow again that was lost."""

import re
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from apps.batches.models import Comparison
from apps.batches.policy_follow import (
    comparison_policy_follow,
    policy_follow_state,
    policy_follows_sweep,
)
from apps.judging.queue import assignment_next, overlap_changed
from apps.projects.models import Project
from tests.agreement.test_stats import vote
from tests.annotate.test_outages import dead_broker  # noqa: F401 - a fixture
from tests.conftest import prompt_line


def policies_of(project: Project) -> dict[str, int]:
    rows = Comparison.objects.filter(project=project).values("policy").annotate(n=Count("pk"))
    return {row["policy"]: row["n"] for row in rows}


def versions(project: Project) -> tuple[int, int]:
    row = Project.objects.values_list("policy_version", "policy_followed").get(pk=project.pk)
    return row[0], row[1]


def policy_set(project: Project, policy: str) -> None:
    project.policy = policy
    project.save(update_fields=["policy"])


@pytest.fixture
def large(settings, project, import_rows):
    """A project 'too large' to follow in the change's transaction: 15 comparisons, chunks of
    4 ids."""
    settings.POLICY_FOLLOW_INLINE = 10
    settings.POLICY_FOLLOW_CHUNK = 4
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(5)))
    return project


def test_a_small_project_follows_in_the_change_s_transaction(project, import_rows):
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(3)))
    assert versions(project) == (0, 0)
    policy_set(project, "depth_first")
    assert policies_of(project) == {"depth_first": 9}
    assert versions(project) == (1, 1)
    # A save that leaves the policy alone counts no change.
    project.name = "Renamed"
    project.save()
    assert versions(project) == (1, 1)


def test_a_large_project_follows_after_the_commit_in_chunks(
    large, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        policy_set(large, "random")
    # Committed, not yet followed: the rows keep the old policy, and are still served.
    assert policies_of(large) == {"breadth_first": 15}
    assert versions(large) == (1, 0)
    annotator = large.memberships.filter(role="annotator").first().user
    assert assignment_next(annotator=annotator, project=large) is not None
    for callback in callbacks:
        callback()  # sends the task: eager in the tests, so it runs here
    assert policies_of(large) == {"random": 15}
    assert versions(large) == (1, 1)


def test_the_follow_reports_its_chunks_and_is_idempotent(large):
    Project.objects.filter(pk=large.pk).update(policy="depth_first", policy_version=1)
    seen: list[int] = []
    assert comparison_policy_follow(project_id=large.pk, after_chunk=seen.append) == 15
    first = Comparison.objects.filter(project=large).order_by("pk").first()
    assert first is not None
    assert seen == [first.pk + 4 * i for i in range(1, 5)]  # 15 ids in chunks of 4
    assert policies_of(large) == {"depth_first": 15}
    assert comparison_policy_follow(project_id=large.pk) == 0
    assert versions(large) == (1, 1)


def test_an_older_follow_run_after_a_newer_change_writes_the_newer_policy(
    large, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as first:
        policy_set(large, "random")
    with django_capture_on_commit_callbacks(execute=False) as second:
        policy_set(Project.objects.get(pk=large.pk), "uncertain_first")
    for callback in first:  # the older change's follow, late
        callback()
    assert policies_of(large) == {"uncertain_first": 15}
    assert versions(large) == (2, 2)
    for callback in second:
        callback()
    assert policies_of(large) == {"uncertain_first": 15}


def test_the_sweep_sends_a_lost_follow_again(large, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        policy_set(large, "depth_first")  # its message lost: the callbacks never run
    assert policy_follows_sweep() == 0  # not stale yet
    assert policies_of(large) == {"breadth_first": 15}
    later = timezone.now() + timedelta(seconds=301)
    assert policy_follows_sweep(now=later) == 1
    assert policies_of(large) == {"depth_first": 15}
    assert versions(large) == (1, 1)
    assert policy_follows_sweep(now=later) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_chunk_commits_so_no_row_stays_locked_and_a_newer_change_takes_over(large):
    """Between two chunks, a row of the first is free to lock (a submit on it does not wait for
    the whole follow), and a newer change commits at once; the rest of the rows get the newer
    policy, and the older follow leaves the mark to the newer one."""
    Project.objects.filter(pk=large.pk).update(policy="random", policy_version=1)
    first = Comparison.objects.filter(project=large).order_by("pk").first()
    assert first is not None
    outcome: dict[str, object] = {}

    def meanwhile() -> None:
        try:
            with transaction.atomic():
                row = (
                    Comparison.objects.select_for_update(nowait=True)
                    .filter(pk=first.pk)
                    .values_list("policy", flat=True)
                    .get()
                )
                outcome["locked"] = row
            policy_set(Project.objects.get(pk=large.pk), "depth_first")  # follows inline
            outcome["changed"] = True
        except OperationalError as error:
            outcome["error"] = error
        finally:
            connections.close_all()

    def after_chunk(next_id: int) -> None:
        if "started" not in outcome:
            outcome["started"] = next_id
            other = threading.Thread(target=meanwhile)
            other.start()
            other.join(30)

    try:
        comparison_policy_follow(project_id=large.pk, after_chunk=after_chunk)
        assert "error" not in outcome, outcome
        assert outcome["locked"] == "random" and outcome["changed"]
        assert policies_of(large) == {"depth_first": 15}
        assert versions(large) == (2, 2)
    finally:
        connection.close()


def figures_page(client, project: Project) -> str:
    response = client.get(reverse("dashboard-figures", args=[project.slug]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_shows_a_follow_waiting_then_how_far_it_is(
    large, lead, django_capture_on_commit_callbacks
):
    assert 'data-testid="policy-follow"' not in figures_page(lead, large)
    with django_capture_on_commit_callbacks(execute=False):
        policy_set(large, "random")  # committed; its task not yet run
    page = figures_page(lead, large)
    assert 'data-testid="policy-follow"' in page
    assert "(policy <strong>Random</strong>, overlap 3)" in page
    assert "waiting for a worker to start" in page
    assert "breadth-first order" in page
    assert 'data-testid="policy-follow-late"' not in page
    pages: list[str] = []
    comparison_policy_follow(
        project_id=large.pk, after_chunk=lambda _: pages.append(figures_page(lead, large))
    )
    # 15 ids in chunks of 4; the page after the last chunk, before the follow marks the
    # version done, says 99%, never 100% of a change still in progress.
    shown = [re.search(r'policy-follow-percent">(\d+)% done', page) for page in pages]
    assert [int(match.group(1)) for match in shown if match] == [26, 53, 80, 99]
    assert 'data-testid="policy-follow"' not in figures_page(lead, large)
    assert policy_follow_state(Project.objects.get(pk=large.pk)) is None


def test_the_dashboard_says_when_a_follow_is_late(large, lead, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        policy_set(large, "depth_first")
    Project.objects.filter(pk=large.pk).update(
        policy_changed_at=timezone.now() - timedelta(seconds=301)
    )
    page = figures_page(lead, large)
    assert 'data-testid="policy-follow-late"' in page
    assert "is a Celery worker running?" in page
    state = policy_follow_state(Project.objects.get(pk=large.pk))
    assert state is not None and state["late"] and state["percent"] is None


@pytest.mark.usefixtures("dead_broker")
def test_a_change_made_while_the_broker_is_gone_stands_and_waits_for_the_sweep(
    large, lead, django_capture_on_commit_callbacks, caplog
):
    """The change commits; its follow cannot be sent, which is logged, not raised; the rows are
    still served; the dashboard says the change waits; the sweep sends it once the broker is
    back (test_the_sweep_sends_a_lost_follow_again)."""
    with django_capture_on_commit_callbacks(execute=True):
        policy_set(large, "depth_first")
    assert versions(large) == (1, 0)
    assert "not sent (broker unreachable): the sweep sends it" in caplog.text
    assert policies_of(large) == {"breadth_first": 15}
    annotator = large.memberships.filter(role="annotator").first().user
    assert assignment_next(annotator=annotator, project=large) is not None
    assert "waiting for a worker to start" in figures_page(lead, large)


def completion(project: Project) -> dict[bool, int]:
    rows = Comparison.objects.filter(project=project).values("complete").annotate(n=Count("pk"))
    return {row["complete"]: row["n"] for row in rows}


def test_a_large_project_follows_a_change_of_overlap_after_the_commit_in_chunks(
    large, lead, django_capture_on_commit_callbacks
):
    """Lowering the overlap completes the comparisons that have its votes; raising it reopens
    them: in the change's transaction for a small project (overlap_changed's own tests), by the
    follow task in chunks for a large one, as a change of policy (the dashboard says so)."""
    annotators = [m.user for m in large.memberships.filter(role="annotator").order_by("user_id")]
    for comparison in Comparison.objects.filter(project=large).order_by("pk")[:6]:
        for annotator in annotators[:2]:  # two votes on each of the first six
            vote(large, annotator, comparison, "a")
    assert completion(large) == {False: 15}
    large.overlap = 2
    large.save(update_fields=["overlap"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert overlap_changed(project=large) is None  # the task's to do
    assert completion(large) == {False: 15}  # not yet followed
    assert versions(large) == (1, 0)
    assert "(policy <strong>Breadth first" in figures_page(lead, large)
    for callback in callbacks:
        callback()  # the follow task, eager here
    assert completion(large) == {True: 6, False: 9}
    assert versions(large) == (1, 1)
    assert 'data-testid="policy-follow"' not in figures_page(lead, large)
    large.overlap = 3
    large.save(update_fields=["overlap"])
    with django_capture_on_commit_callbacks(execute=True):
        overlap_changed(project=large)
    assert completion(large) == {False: 15}
    assert versions(large) == (2, 2)


def test_the_admin_says_a_large_project_follows_in_the_background(large, client, bob):
    from tests.projects.test_admin import _project_form

    large.memberships.exclude(user=bob).exclude(role="annotator").delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{large.pk}/change/"
    response = client.post(url, _project_form(large, overlap="4"), follow=True)
    assert response.status_code == 200
    assert "follow the new queue settings in the background" in response.content.decode()
    assert versions(large) == (1, 0)  # the task runs after the commit (never, in this test)
    # A change that needs nothing of the comparisons says nothing of it.
    Project.objects.filter(pk=large.pk).update(policy_followed=1)
    response = client.post(url, _project_form(large, overlap="4", name="Renamed"), follow=True)
    assert "in the background" not in response.content.decode()
