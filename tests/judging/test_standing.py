"""Who may act on a lease: one taken before its annotator was removed from the project, their
account deactivated or the gold rule stopped them is refused, and released, at every door (the
API, the judging page, the service) and on both databases."""

import random
import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.accounts.services import account_deactivate
from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip
from apps.judging.queue import (
    AnnotatorBlocked,
    JudgmentConflict,
    assignment_next,
    assignment_skip,
    judgment_submit,
    judgment_undo,
    leases_reclaim_expired,
)
from apps.projects.models import Membership
from apps.projects.services import membership_add
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"
UNDO = "/api/v1/projects/demo/judgments/undo/"


def judge_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/judgment/"


def skip_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/skip/"


def slots(comparison_id):
    """The comparison's (judgment_count, lease_count)."""
    c = Comparison.objects.get(pk=comparison_id)
    return (c.judgment_count, c.lease_count)


def assert_released(lease_id, comparison_id, judgments=0):
    """Nothing stored, the lease closed and its slot back in the pool."""
    assert Assignment.objects.get(pk=lease_id).status == AssignmentStatus.EXPIRED
    assert slots(comparison_id) == (judgments, 0)
    assert not Judgment.objects.filter(assignment_id=lease_id).exists()
    assert not Skip.objects.filter(assignment_id=lease_id).exists()


def remove(project, user):
    """What the admin's membership inline does when a lead deletes the row."""
    Membership.objects.filter(project=project, user=user).delete()


def stop_by_gold(project, user):
    """A lead sets a minimum gold accuracy that the annotator's gold answers are below."""
    Membership.objects.filter(project=project, user=user).update(gold_answered=4, gold_correct=1)
    project.gold_min_accuracy = 0.8
    project.gold_min_answers = 3
    project.save()


# -- the API -----------------------------------------------------------------------------------


def test_a_removed_member_cannot_judge_on_an_earlier_lease(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    assert slots(lease["comparison"]) == (0, 1)
    remove(project, annotators[0])
    response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 403, response.content
    assert "no longer a member of this project" in response.json()["detail"]
    assert "Nothing was stored" in response.json()["detail"]
    assert_released(lease["id"], lease["comparison"])
    again = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert again.status_code == 403  # and stays refused; the slot is not given back twice
    assert slots(lease["comparison"]) == (0, 0)


def test_a_removed_member_cannot_skip_on_an_earlier_lease(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    remove(project, annotators[0])
    response = client.post(skip_url(lease["id"]), {"reason": "other", "note": "x"}, format="json")
    assert response.status_code == 403, response.content
    assert "no longer a member" in response.json()["detail"]
    assert_released(lease["id"], lease["comparison"])
    assert Comparison.objects.get(pk=lease["comparison"]).skip_count == 0


def test_a_removed_member_with_a_reclaimed_lease_is_refused_too(project, annotators, batch):
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    leases_reclaim_expired(now=timezone.now() + timedelta(days=1))
    remove(project, user)
    with pytest.raises(AnnotatorBlocked, match="no longer a member"):
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert_released(lease.pk, lease.comparison_id)


def test_a_removed_members_gold_lease_is_closed_and_takes_no_slot_back(
    project, annotators, import_rows
):
    """Gold leases hold no slot: refusing one closes it and leaves the counts alone."""
    project.gold_rate = 1.0
    project.save()
    gold = prompt_line("g-1")
    gold["gold"] = {"preferred": "c1"}
    import_rows(gold, prompt_line("p-1"))
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    comparison = Comparison.objects.get(pk=lease.comparison_id)
    assert comparison.is_gold and slots(comparison.pk) == (0, 0)
    remove(project, user)
    with pytest.raises(AnnotatorBlocked, match="no longer a member"):
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert_released(lease.pk, comparison.pk)


def test_a_gold_stopped_annotator_cannot_judge_or_skip_an_earlier_lease(
    api, project, annotators, batch
):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    stop_by_gold(project, annotators[0])
    response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 403, response.content
    assert response.json()["detail"] == (
        "No more work for you in this project: your gold accuracy 25% over 4 gold items is below "
        "the project's minimum of 80%. Nothing was stored, and the comparison goes back to the "
        "pool."
    )
    assert_released(lease["id"], lease["comparison"])
    member = Membership.objects.get(project=project, user=annotators[0])
    assert (member.judgment_count, member.skip_count) == (0, 0)
    # Next says the same, and hands out nothing.
    refused = client.post(NEXT)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "No more work for you in this project: your gold accuracy 25% over 4 gold items is below "
        "the project's minimum of 80%."
    )


def test_a_gold_stopped_annotator_cannot_skip_an_earlier_lease(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    stop_by_gold(project, annotators[0])
    response = client.post(skip_url(lease["id"]), {"reason": "other", "note": "x"}, format="json")
    assert response.status_code == 403, response.content
    assert "gold accuracy 25%" in response.json()["detail"]
    assert_released(lease["id"], lease["comparison"])


def test_an_annotator_in_good_standing_is_not_refused(api, project, annotators, batch):
    """The gold rule applies only past gold_min_answers, as next applies it."""
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    Membership.objects.filter(project=project, user=annotators[0]).update(
        gold_answered=2, gold_correct=0
    )
    project.gold_min_accuracy, project.gold_min_answers = 0.8, 3
    project.save()
    response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 201, response.content
    assert slots(lease["comparison"]) == (1, 0)


def test_a_judgment_stored_before_removal_is_still_retried_as_such(api, project, annotators, batch):
    """Only leases still to be answered are refused: a retry of what was stored before the
    removal still says so."""
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    body = {"choice": "left", "idempotency_key": "k-before"}
    first = client.post(judge_url(lease["id"]), body, format="json")
    remove(project, annotators[0])
    again = client.post(judge_url(lease["id"]), body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert slots(lease["comparison"]) == (1, 0)


def test_a_gold_stopped_annotator_cannot_undo(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    assert client.post(judge_url(lease["id"]), {"choice": "left"}, format="json").status_code == 201
    stop_by_gold(project, annotators[0])
    response = client.post(UNDO)
    assert response.status_code == 403, response.content
    assert "gold accuracy 25%" in response.json()["detail"]
    assert Judgment.objects.filter(assignment_id=lease["id"]).exists()  # stays as it was
    assert slots(lease["comparison"]) == (1, 0)
    assert not Assignment.objects.filter(status=AssignmentStatus.OPEN).exists()


def test_a_removed_member_cannot_undo(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    remove(project, annotators[0])
    assert client.post(UNDO).status_code == 404  # the project is no longer theirs to see
    with pytest.raises(AnnotatorBlocked, match="no longer a member"):
        judgment_undo(project=project, annotator=annotators[0])
    assert slots(lease["comparison"]) == (1, 0)
    assert not Assignment.objects.filter(status=AssignmentStatus.OPEN).exists()


# -- a deactivated account ---------------------------------------------------------------------


def test_deactivation_releases_the_lease_and_refuses_every_door(
    api, client, project, annotators, bob, batch
):
    """The whole story: account_deactivate releases the lease at once; the token and the
    session stop working; a submission already past authentication when the account was
    deactivated is refused by the service; the counts stay consistent throughout."""
    user = annotators[0]
    api_client = api(user)
    lease = api_client.post(NEXT).json()
    client.force_login(user)
    assert account_deactivate(account=user, by=bob) == 1
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.EXPIRED
    assert slots(lease["comparison"]) == (0, 0)

    response = api_client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 401, response.content
    page = client.post(f"/p/demo/a/{lease['id']}/", {"choice": "left"})
    assert page.status_code == 302 and "/login/" in page["Location"]
    htmx = client.post(
        f"/p/demo/a/{lease['id']}/", {"choice": "left"}, headers={"HX-Request": "true"}
    )
    assert "/login/" in htmx["HX-Redirect"]

    # A request authenticated a moment before the deactivation (late, into a free slot).
    user.refresh_from_db()
    with pytest.raises(AnnotatorBlocked, match="account has been deactivated"):
        judgment_submit(assignment_id=lease["id"], annotator=user, choice="left")
    with pytest.raises(AnnotatorBlocked, match="account has been deactivated"):
        assignment_skip(assignment_id=lease["id"], annotator=user, reason="other", note="x")
    assert slots(lease["comparison"]) == (0, 0)
    assert not Judgment.objects.exists()
    assert Membership.objects.get(project=project, user=user).judgment_count == 0


def test_an_account_deactivated_without_the_service_is_refused_and_released(
    project, annotators, batch
):
    """is_active cleared some other way (the user admin, the shell): the lease is still open;
    the submission racing it is refused and releases it."""
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(AnnotatorBlocked, match="account has been deactivated"):
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    assert_released(lease.pk, lease.comparison_id)


# -- the judging page --------------------------------------------------------------------------


def current_assignment(html):
    match = re.search(r'data-assignment="(\d+)"', html)
    assert match, html
    return int(match.group(1))


@pytest.fixture
def ann_page(client, annotators, batch):
    client.force_login(annotators[0])
    return client


@pytest.mark.parametrize("action", ["judge", "skip"])
def test_the_page_tells_a_removed_member_why_and_releases_the_lease(
    ann_page, project, annotators, action
):
    lease = current_assignment(ann_page.get("/p/demo/").content.decode())
    comparison = Assignment.objects.get(pk=lease).comparison_id
    remove(project, annotators[0])
    url = f"/p/demo/a/{lease}/" + ("skip/" if action == "skip" else "")
    form = {"choice": "left"} if action == "judge" else {"reason": "other", "note": "x"}
    htmx = ann_page.post(url, form, headers={"HX-Request": "true"})
    html = htmx.content.decode()
    assert htmx.status_code == 200  # htmx swaps only a success into the card
    assert html.lstrip().startswith('<section id="comparison"')
    assert "You are no longer a member of this project." in html
    assert_released(lease, comparison)
    plain = ann_page.post(url, form)
    assert plain.status_code == 403
    assert "You are no longer a member of this project." in plain.content.decode()


def test_the_page_hides_the_project_from_others(client, charlie, ann_page, project):
    lease = current_assignment(ann_page.get("/p/demo/").content.decode())
    client.force_login(charlie)
    assert client.post(f"/p/demo/a/{lease}/", {"choice": "left"}).status_code == 404
    assert Assignment.objects.get(pk=lease).status == AssignmentStatus.OPEN


@pytest.mark.parametrize("htmx", [True, False])
def test_the_page_tells_a_gold_stopped_annotator_why(ann_page, project, annotators, htmx):
    lease = current_assignment(ann_page.get("/p/demo/").content.decode())
    comparison = Assignment.objects.get(pk=lease).comparison_id
    stop_by_gold(project, annotators[0])
    headers = {"HX-Request": "true"} if htmx else {}
    response = ann_page.post(f"/p/demo/a/{lease}/", {"choice": "left"}, headers=headers)
    html = response.content.decode()
    assert response.status_code == 200
    assert "gold accuracy 25% over 4 gold items" in html
    assert "Nothing was stored" in html
    assert "No more work for you here" in html  # the card says so, and shows no comparison
    assert "data-assignment" not in html
    assert_released(lease, comparison)


def test_the_page_refuses_undo_to_a_gold_stopped_annotator_with_a_message(
    ann_page, project, annotators
):
    lease = current_assignment(ann_page.get("/p/demo/").content.decode())
    ann_page.post(f"/p/demo/a/{lease}/", {"choice": "left"})
    stop_by_gold(project, annotators[0])
    response = ann_page.post("/p/demo/undo/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "gold accuracy 25%" in response.content.decode()
    assert Judgment.objects.filter(assignment_id=lease).exists()


# -- races on PostgreSQL -----------------------------------------------------------------------


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scheme", ["pairwise", "listwise"])
def test_a_submission_waiting_on_a_deactivation_is_refused(
    project, annotators, bob, import_rows, scheme
):
    """The deactivation holds the lease's row while it releases it; the submission that waited
    for that row must see the account as it is once it gets the row, not as it was when its
    statement began (it would take the judgment into the freed slot). Pairwise runs
    annotate_submit, listwise the ORM path."""
    project.scheme = scheme
    project.save()
    import_rows(prompt_line("p-1", n=3))
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    answer = (
        {"ranking": [c.external_id for c in lease.shown]}
        if scheme == "listwise"
        else {"choice": "left"}
    )
    holding, done = threading.Event(), threading.Event()
    outcome: list[str] = []

    def deactivate() -> None:
        try:
            with transaction.atomic():
                account_deactivate(account=user, by=bob)
                holding.set()
                done.wait(timeout=30)
        finally:
            connections.close_all()

    def submit() -> None:
        try:
            judgment_submit(assignment_id=lease.pk, annotator=user, **answer)
            outcome.append("stored")
        except AnnotatorBlocked as exc:
            outcome.append(str(exc))
        finally:
            connections.close_all()

    deactivator = threading.Thread(target=deactivate)
    deactivator.start()
    assert holding.wait(timeout=30)
    submitter = threading.Thread(target=submit)
    submitter.start()
    for _ in range(300):  # until the submission waits on the lease's row
        if _waiting_on_a_lock():
            break
        time.sleep(0.01)
    else:
        pytest.fail("the submission never waited on the deactivation")
    done.set()
    deactivator.join(timeout=30)
    submitter.join(timeout=30)
    assert outcome and "account has been deactivated" in outcome[0], outcome
    assert not Judgment.objects.exists()
    assert slots(lease.comparison_id) == (0, 0)
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.EXPIRED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_removals_deactivations_and_gold_stops_racing_the_queue_keep_every_count(
    project, alice, make_user, import_rows
):
    """16 annotators race next, submit and skip while a lead removes four of them, deactivates
    four and the gold rule stops two: every refusal releases its lease, and the comparisons'
    counts match the judgments and open leases exactly."""
    from tests.judging.test_concurrency import check_invariants, run_threads

    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(40)))  # 120 comparisons
    project.gold_min_accuracy, project.gold_min_answers = 0.5, 3
    project.save()
    users = [make_user(f"racer{i}") for i in range(16)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    refused: dict[int, str] = {}
    lock = threading.Lock()
    started = threading.Event()

    def work(index: int) -> None:
        if index == len(users):  # the lead
            started.wait(timeout=30)
            for _ in range(1000):  # in the thick of it: some work done, most still to do
                if Judgment.objects.count() >= 30:
                    break
                time.sleep(0.005)
            Membership.objects.filter(project=project, user__in=users[0:4]).delete()
            for user in users[4:8]:
                account_deactivate(account=user, by=alice)
            Membership.objects.filter(project=project, user__in=users[8:10]).update(
                gold_answered=4, gold_correct=0
            )
            return
        user = users[index]
        rng = random.Random(index)
        while True:
            started.set()
            # What the doors check before next (membership_for, authentication).
            if not Membership.objects.filter(
                project=project, user=user, user__is_active=True
            ).exists():
                return
            try:
                lease = assignment_next(project=project, annotator=user)
            except AnnotatorBlocked:
                return
            if lease is None:
                return
            try:
                if rng.random() < 0.2:
                    assignment_skip(
                        assignment_id=lease.pk, annotator=user, reason="other", note="race"
                    )
                else:
                    judgment_submit(
                        assignment_id=lease.pk,
                        annotator=user,
                        choice=rng.choice(["left", "right", "tie"]),
                    )
            except AnnotatorBlocked as exc:
                with lock:
                    refused[user.pk] = str(exc)
                return
            except JudgmentConflict:
                continue

    errors = run_threads(work, len(users) + 1)
    assert errors == []
    check_invariants(overlap=3)
    assert refused, "no submission raced a removal: the test proved nothing"
    for user_pk in refused:  # a refusal released the lease it was refused on
        assert not Assignment.objects.filter(
            annotator_id=user_pk, status=AssignmentStatus.OPEN
        ).exists()
