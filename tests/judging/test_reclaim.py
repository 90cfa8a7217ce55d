"""The reclaim (sql_reclaim), on both legs: PostgreSQL runs annotate_reclaim, which embeds the
shared statements; other databases run the same statements through a cursor."""

from datetime import timedelta

from django.utils import timezone

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import assignment_next, leases_reclaim_expired
from apps.projects.services import membership_add
from tests.conftest import prompt_line


def _open_leases_match_the_slots() -> None:
    """Each ordinary comparison's slots taken are its open leases; a gold one's are none."""
    for comparison in Comparison.objects.all():
        open_leases = Assignment.objects.filter(
            comparison=comparison, status=AssignmentStatus.OPEN
        ).count()
        assert comparison.lease_count == (0 if comparison.is_gold else open_leases)


def test_a_reclaim_gives_back_each_ordinary_slot_and_none_for_gold(project, make_user, import_rows):
    gold = prompt_line("g")
    gold["gold"] = {"preferred": "c1"}
    import_rows(gold, prompt_line("p0"), prompt_line("p1"))
    users = [make_user(f"late{i}") for i in range(5)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    past = timezone.now() - timedelta(hours=1)
    # Depth first: a live lease and two expired ones on one comparison, then one on another,
    # and an expired gold lease. The leases taken in the past reclaim nothing on the way.
    project.policy = "depth_first"
    project.save()
    live = assignment_next(project=project, annotator=users[3])
    first, second = (assignment_next(project=project, annotator=u, now=past) for u in users[1:3])
    other = assignment_next(project=project, annotator=users[4], now=past)
    assert first and second and live and other
    assert first.comparison_id == second.comparison_id == live.comparison_id
    assert other.comparison_id != first.comparison_id
    project.gold_rate = 1.0
    project.save()
    gold_lease = assignment_next(project=project, annotator=users[0], now=past)
    assert gold_lease is not None and gold_lease.comparison.is_gold
    _open_leases_match_the_slots()

    now = timezone.now()
    assert leases_reclaim_expired(project_id=project.pk + 1000, now=now) == 0
    assert leases_reclaim_expired(now=now, limit=3) == 3
    _open_leases_match_the_slots()
    assert leases_reclaim_expired(now=now, limit=3) == 1
    assert leases_reclaim_expired(now=now) == 0
    _open_leases_match_the_slots()

    expired = Assignment.objects.filter(status=AssignmentStatus.EXPIRED)
    assert set(expired.values_list("id", flat=True)) == {
        gold_lease.pk,
        first.pk,
        second.pk,
        other.pk,
    }
    assert set(expired.values_list("closed_at", flat=True)) == {now}
    live.refresh_from_db()
    assert live.status == AssignmentStatus.OPEN and live.closed_at is None
    assert Comparison.objects.get(pk=first.comparison_id).lease_count == 1
    assert Comparison.objects.get(pk=gold_lease.comparison_id).lease_count == 0
