"""Many real threads race next and submit on PostgreSQL; the invariants must hold."""

import random
import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.db.models import Count

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.judging.queue import JudgmentConflict, assignment_next, judgment_submit
from apps.projects.services import membership_add
from tests.conftest import prompt_line

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 32


def run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def wrapper(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


def check_invariants(overlap: int) -> None:
    over = Comparison.objects.filter(judgment_count__gt=overlap).count()
    assert over == 0, f"{over} comparisons over their overlap"
    doubled = (
        Judgment.objects.values("comparison", "annotator").annotate(n=Count("id")).filter(n__gt=1)
    )
    assert not doubled.exists()
    real = Counter(Judgment.objects.values_list("comparison_id", flat=True))
    open_leases = Counter(
        Assignment.objects.filter(status=AssignmentStatus.OPEN).values_list(
            "comparison_id", flat=True
        )
    )
    for comparison in Comparison.objects.all():
        assert comparison.judgment_count == real[comparison.pk], comparison.pk
        assert comparison.lease_count == open_leases[comparison.pk], comparison.pk
        assert comparison.judgment_count + comparison.lease_count <= overlap


def test_32_threads_fill_every_comparison_exactly_to_its_overlap(project, make_user, import_rows):
    assert connection.vendor == "postgresql"
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(20)))  # 60 comparisons
    users = [make_user(f"racer{i}") for i in range(THREADS)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    acknowledged: list[tuple[int, int]] = []
    lock = threading.Lock()

    def annotate(index: int) -> None:
        user = users[index]
        rng = random.Random(index)
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            result = judgment_submit(
                assignment_id=lease.pk,
                annotator=user,
                choice=rng.choice(["left", "right", "tie", "both_bad"]),
                idempotency_key=f"{user.pk}-{lease.pk}",
            )
            # A client retry of the same request must not store a second judgment.
            if rng.random() < 0.2:
                again = judgment_submit(
                    assignment_id=lease.pk,
                    annotator=user,
                    choice=result.judgment.choice,
                    idempotency_key=f"{user.pk}-{lease.pk}",
                )
                assert not again.created and again.judgment.pk == result.judgment.pk
            with lock:
                acknowledged.append((result.judgment.pk, lease.comparison_id))

    errors = run_threads(annotate, THREADS)
    assert errors == []
    check_invariants(overlap=3)
    assert set(Comparison.objects.values_list("judgment_count", flat=True)) == {3}
    assert Judgment.objects.count() == 60 * 3 == len(acknowledged)
    stored = set(Judgment.objects.values_list("pk", "comparison_id"))
    assert set(acknowledged) == stored


def test_racing_with_abandoned_leases_and_double_submits_loses_nothing(
    project, make_user, import_rows
):
    """Annotators abandon leases (which then expire), double-submit, and retry."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.judging.queue import leases_reclaim_expired

    import_rows(*(prompt_line(f"q{i}", n=2) for i in range(30)))  # 30 comparisons
    users = [make_user(f"flaky{i}") for i in range(THREADS)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    acknowledged: set[int] = set()
    lock = threading.Lock()
    past = timezone.now() - timedelta(hours=1)

    def annotate(index: int) -> None:
        user = users[index]
        rng = random.Random(1000 + index)
        for _ in range(40):
            # Some leases are taken "in the past": already expired, as if abandoned.
            abandoned = rng.random() < 0.15
            lease = assignment_next(
                project=project, annotator=user, now=past if abandoned else None
            )
            if lease is None:
                break
            if abandoned:
                continue
            outcomes: list = []
            for _attempt in range(2 if rng.random() < 0.3 else 1):
                try:
                    outcomes.append(
                        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
                    )
                except JudgmentConflict:
                    outcomes.append(None)
            created = [o for o in outcomes if o is not None and o.created]
            assert len(created) <= 1
            with lock:
                acknowledged.update(o.judgment.pk for o in created)

    errors = run_threads(annotate, THREADS)
    assert errors == []
    check_invariants(overlap=3)
    assert acknowledged == set(Judgment.objects.values_list("pk", flat=True))
    # Afterwards the sweep returns every abandoned lease, and the queue can finish.
    while leases_reclaim_expired(now=timezone.now() + timedelta(hours=2)):
        pass
    assert not Assignment.objects.filter(status=AssignmentStatus.OPEN).exists()
    for user in users:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="right")
    check_invariants(overlap=3)
    assert set(Comparison.objects.values_list("judgment_count", flat=True)) == {3}


def test_64_threads_with_abandon_skip_retry_and_late_submission(project, make_user, import_rows):
    """The issue's hammer: every invariant holds, nothing acknowledged is lost, and afterwards
    every comparison that can still complete does."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.judging.models import Skip
    from apps.judging.queue import assignment_skip, leases_reclaim_expired

    threads = 64
    import_rows(*(prompt_line(f"h{i}", n=3) for i in range(25)))  # 75 comparisons
    users = [make_user(f"hammer{i}") for i in range(threads)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    acknowledged: set[int] = set()
    skipped: set[tuple[int, int]] = set()
    lock = threading.Lock()

    def annotate(index: int) -> None:
        user = users[index]
        rng = random.Random(7000 + index)
        for _ in range(12):
            roll = rng.random()
            past = timezone.now() - timedelta(hours=1)
            late = roll < 0.2  # a lease that is already expired when it is taken
            lease = assignment_next(project=project, annotator=user, now=past if late else None)
            if lease is None:
                return
            if roll < 0.1:
                continue  # abandoned: never submitted, expires
            if roll < 0.3 and not late:
                assignment_skip(
                    assignment_id=lease.pk, annotator=user, reason="other", note="hammer"
                )
                with lock:
                    skipped.add((lease.comparison_id, user.pk))
                continue
            key = f"{user.pk}-{lease.pk}"
            attempts = 2 if rng.random() < 0.3 else 1  # a client retry
            for _attempt in range(attempts):
                try:
                    result = judgment_submit(
                        assignment_id=lease.pk,
                        annotator=user,
                        choice=rng.choice(["left", "right", "tie", "both_bad"]),
                        idempotency_key=key,
                    )
                except JudgmentConflict:
                    continue  # a late judgment refused with a reason: never silently dropped
                if result.created:
                    with lock:
                        acknowledged.add(result.judgment.pk)

    errors = run_threads(annotate, threads)
    assert errors == []
    check_invariants(overlap=3)
    assert acknowledged <= set(Judgment.objects.values_list("pk", flat=True))
    assert skipped == set(Skip.objects.values_list("comparison_id", "annotator_id"))

    # Let every lease lapse, then drain the queue: no lease dangles, and every comparison that
    # can still complete (enough annotators did not skip it) completes.
    while leases_reclaim_expired(now=timezone.now() + timedelta(days=1)):
        pass
    assert not Assignment.objects.filter(status=AssignmentStatus.OPEN).exists()
    for user in users:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            result = judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
            acknowledged.add(result.judgment.pk)
    check_invariants(overlap=3)
    assert acknowledged == set(Judgment.objects.values_list("pk", flat=True))
    skips = Counter(comparison_id for comparison_id, _ in skipped)
    for comparison in Comparison.objects.all():
        assert comparison.judgment_count == min(3, threads - skips[comparison.pk])
        assert comparison.complete == (comparison.judgment_count >= 3)


def test_one_annotator_racing_next_against_themselves_never_fails(project, make_user, import_rows):
    """Double clicks: many requests of one annotator at once never fail. Each gets a lease of
    theirs, or (when every open comparison is held by their other requests at that moment)
    nothing, and no comparison is leased to them twice."""
    import_rows(*(prompt_line(f"d{i}") for i in range(3)))
    user = make_user("clicker")
    membership_add(project=project, user=user, role="annotator")
    leases: list[int] = []
    lock = threading.Lock()

    def click(index: int) -> None:
        lease = assignment_next(project=project, annotator=user)
        if lease is not None:
            with lock:
                leases.append(lease.pk)

    for _round in range(5):
        errors = run_threads(click, 8)
        assert errors == []
        check_invariants(overlap=3)
    open_leases = Assignment.objects.filter(annotator=user, status=AssignmentStatus.OPEN)
    assert leases and set(leases) == set(open_leases.values_list("pk", flat=True))


@pytest.mark.parametrize("cap_on", ["project", "batch"])
def test_one_annotator_in_many_tabs_never_passes_a_cap(project, make_user, import_rows, cap_on):
    """16 requests of one annotator at once, each looping next then submit: they may take more
    leases than the cap leaves room for, but exactly the cap's worth of judgments is stored,
    the rest are refused with a conflict, and every refused lease gives its slot back."""
    from apps.batches.models import Batch
    from apps.judging.queue import AnnotatorBlocked
    from apps.projects.models import Membership

    batch = import_rows(*(prompt_line(f"t{i}", n=3) for i in range(20)))
    cap = 5
    if cap_on == "project":
        project.annotator_cap = cap
        project.save()
    else:
        Batch.objects.filter(pk=batch.pk).update(annotator_cap=cap)
    user = make_user("tabs")
    membership_add(project=project, user=user, role="annotator")
    stored: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def tab(index: int) -> None:
        for _ in range(10):
            try:
                lease = assignment_next(project=project, annotator=user)
            except AnnotatorBlocked:
                return
            if lease is None:
                return
            try:
                result = judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
            except JudgmentConflict as exc:
                with lock:
                    refused.append(str(exc))
                continue
            with lock:
                stored.append(result.judgment.pk)

    assert run_threads(tab, 16) == []
    assert len(stored) == cap == Judgment.objects.filter(annotator=user).count()
    assert Membership.objects.get(project=project, user=user).judgment_count == cap
    assert all("cap of 5" in message or "already" in message for message in refused)
    check_invariants(overlap=3)
    assert not Assignment.objects.filter(annotator=user, status=AssignmentStatus.OPEN).exists()
