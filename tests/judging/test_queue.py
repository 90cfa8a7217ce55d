"""The queue: leases, overlap, reload, expiry, order and sides."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.batches.models import BatchStatus, Comparison
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import assignment_next, judgment_submit, leases_reclaim_expired
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"


def test_it_hands_out_a_lease_with_the_contract_fields(api, annotators, batch):
    response = api(annotators[0]).post(NEXT)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"kind", "id", "comparison", "prompt", "left", "right", "expires_at"}
    assert body["kind"] == "assignment"
    assignment = Assignment.objects.get(pk=body["id"])
    assert body["comparison"] == assignment.comparison_id
    assert body["prompt"] == "What is 2 + 2?"
    assert body["left"] == {"id": assignment.left.external_id, "text": assignment.left.text}
    assert body["right"] == {"id": assignment.right.external_id, "text": assignment.right.text}
    assert {body["left"]["id"], body["right"]["id"]} == {
        assignment.comparison.candidate_a.external_id,
        assignment.comparison.candidate_b.external_id,
    }
    assert Comparison.objects.get(pk=body["comparison"]).lease_count == 1


def test_it_returns_a_conversation_prompt_as_imported(api, annotators, import_rows):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    import_rows(prompt_line(prompt=messages))
    assert api(annotators[0]).post(NEXT).json()["prompt"] == messages


def test_it_gives_the_same_lease_back_on_reload(api, annotators, batch):
    first = api(annotators[0]).post(NEXT).json()
    again = api(annotators[0]).post(NEXT).json()
    assert again == first
    assert Assignment.objects.count() == 1


def test_it_counts_open_leases_against_the_overlap(project, annotators, make_user, import_rows):
    import_rows(prompt_line("only"))  # one comparison, overlap 3
    extra = make_user("dan")
    from apps.projects.services import membership_add

    membership_add(project=project, user=extra, role="annotator")
    leases = [assignment_next(project=project, annotator=u) for u in annotators]
    assert all(lease is not None for lease in leases)
    assert assignment_next(project=project, annotator=extra) is None
    assert Comparison.objects.get().lease_count == 3


def test_it_never_gives_an_annotator_a_comparison_twice(project, annotators, import_rows):
    import_rows(prompt_line("a"), prompt_line("b"))
    seen = []
    while (lease := assignment_next(project=project, annotator=annotators[0])) is not None:
        seen.append(lease.comparison_id)
        judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    assert sorted(seen) == sorted(Comparison.objects.values_list("id", flat=True))


def test_it_goes_breadth_first(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(3)))
    first = assignment_next(project=project, annotator=annotators[0])
    judgment_submit(assignment_id=first.pk, annotator=annotators[0], choice="left")
    # The others get the untouched comparisons before the one that has a vote.
    second = assignment_next(project=project, annotator=annotators[1])
    third = assignment_next(project=project, annotator=annotators[2])
    assert len({first.comparison_id, second.comparison_id, third.comparison_id}) == 3


def test_it_returns_204_when_nothing_is_left(api, project, annotators, import_rows):
    import_rows(prompt_line("a"))
    client = api(annotators[0])
    assignment_id = client.post(NEXT).json()["id"]
    client.post(f"/api/v1/assignments/{assignment_id}/judgment/", {"choice": "tie"}, format="json")
    response = client.post(NEXT)
    assert response.status_code == 204
    assert response.content == b""


def test_it_hands_out_nothing_from_paused_batches(project, annotators, batch):
    batch.status = BatchStatus.PAUSED
    batch.save()
    assert assignment_next(project=project, annotator=annotators[0]) is None


@pytest.mark.parametrize("who", ["charlie", "anonymous"])
def test_it_refuses_non_members(api, batch, charlie, who):
    response = api(charlie if who == "charlie" else None).post(NEXT)
    assert response.status_code in (401, 403, 404)
    assert Assignment.objects.count() == 0


def test_it_reclaims_expired_leases_lazily(project, annotators, import_rows):
    import_rows(prompt_line("only"))
    past = timezone.now() - timedelta(hours=1)
    stale = [assignment_next(project=project, annotator=u, now=past) for u in annotators]
    assert Comparison.objects.get().lease_count == 3
    # The next request after expiry finds the slot free again.
    fresh = assignment_next(project=project, annotator=annotators[0])
    assert fresh is not None and fresh.pk not in {a.pk for a in stale}
    assert Comparison.objects.get().lease_count == 1
    statuses = set(Assignment.objects.filter(pk__in=[a.pk for a in stale]).values_list("status"))
    assert statuses == {(AssignmentStatus.EXPIRED,)}


def test_the_sweep_reclaims_every_expired_lease(project, annotators, batch):
    past = timezone.now() - timedelta(hours=1)
    for user in annotators:
        assignment_next(project=project, annotator=user, now=past)
    assert leases_reclaim_expired() == 3
    assert leases_reclaim_expired() == 0
    assert sum(Comparison.objects.values_list("lease_count", flat=True)) == 0


def test_it_randomizes_and_records_the_sides(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(40)))
    swapped = 0
    for _ in range(40):
        lease = assignment_next(project=project, annotator=annotators[0])
        swapped += lease.left_id == lease.comparison.candidate_b_id
        judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    # 40 fair coin flips: all-or-nothing has probability 2 * 2**-40.
    assert 0 < swapped < 40
