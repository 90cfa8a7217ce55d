"""Issue 3's rules: policies, priorities, pausing, caps, skips and gold items."""

import secrets
from datetime import timedelta

import pytest
from django.db.models import BooleanField, ExpressionWrapper, F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.batches.models import Batch, BatchStatus, Comparison
from apps.batches.queue_order import (
    FILLED,
    OPEN_ORDINARY,
    complete_condition,
    complete_sql,
    complete_value,
    takes_votes_sql,
)
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip
from apps.judging.queue import (
    AnnotatorBlocked,
    JudgmentConflict,
    Preference,
    assignment_next,
    assignment_skip,
    comparison_peek,
    judgment_submit,
    leases_reclaim_expired,
    overlap_changed,
)
from apps.projects.models import Membership
from apps.projects.services import membership_add
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"


def judge_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/judgment/"


def judge(project, user, choice="left", option=None):
    """Leases and judges one comparison; `option` 'a'/'b' votes for that candidate."""
    lease = assignment_next(project=project, annotator=user)
    assert lease is not None
    if option is not None:
        wanted = (
            lease.comparison.candidate_a_id if option == "a" else lease.comparison.candidate_b_id
        )
        choice = "left" if lease.left_id == wanted else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
    return lease.comparison_id


@pytest.fixture
def crowd(project, make_user):
    users = [make_user(f"crowd{i}") for i in range(12)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    return users


def set_policy(project, policy, overlap=None):
    project.policy = policy
    if overlap is not None:
        project.overlap = overlap
    project.save()


# -- policies ------------------------------------------------------------------------------


def test_depth_first_finishes_started_comparisons_first(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(5)))
    set_policy(project, "depth_first")
    first = judge(project, crowd[0])
    assert judge(project, crowd[1]) == first
    assert judge(project, crowd[2]) == first
    # Full now (overlap 3): the next annotator starts another.
    assert judge(project, crowd[3]) != first


def test_breadth_first_spreads_votes(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(5)))
    picked = [judge(project, user) for user in crowd[:5]]
    assert len(set(picked)) == 5


def test_uncertain_first_prefers_split_votes(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(3)))
    set_policy(project, "depth_first", overlap=5)
    split = judge(project, crowd[0], option="a")
    assert judge(project, crowd[1], option="b") == split  # now 1-1
    set_policy(project, "breadth_first")
    one_sided = judge(project, crowd[2], option="a")  # a fresh one: 1-0
    assert one_sided != split
    set_policy(project, "uncertain_first")
    # The 1-1 comparison first, then (most split being equal) the fewest votes.
    assert judge(project, crowd[3]) == split


def test_random_policy_does_not_hand_everyone_the_same_first_item(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(30)))
    set_policy(project, "random", overlap=12)
    firsts = {assignment_next(project=project, annotator=user).comparison_id for user in crowd}
    # 12 annotators each start at a random point of 30 ranks: all the same has odds ~30**-11.
    assert len(firsts) > 1


def test_the_peek_starts_where_next_starts(project, annotators, import_rows, monkeypatch):
    """Under the random policy the prefetch draws its start as next does (rank_start), on
    every database: both give the first comparison at or after the drawn rank, never simply
    the lowest rank (which would hand every page the same prefetch)."""
    import_rows(*(prompt_line(f"p{i}") for i in range(6)))
    set_policy(project, "random")
    ids = list(Comparison.objects.order_by("id").values_list("id", flat=True))
    for n, pk in enumerate(ids):
        Comparison.objects.filter(pk=pk).update(rank=100 * (n + 1))
    # Every random draw of the queue (the start, the sides) gives 350, or n - 1 below it.
    monkeypatch.setattr(secrets, "randbelow", lambda n: min(n - 1, 350))
    peek = comparison_peek(project=project, annotator=annotators[0])
    assert peek is not None
    assert peek.assignment.comparison_id == ids[3]  # rank 400, the first at or after 350
    lease = assignment_next(project=project, annotator=annotators[1])
    assert lease is not None and lease.comparison_id == ids[3]


def test_the_policy_can_change_while_the_project_runs(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(4)))
    started = judge(project, crowd[0])
    second = judge(project, crowd[1])
    assert second != started  # breadth first: an untouched one
    set_policy(project, "depth_first")
    # Depth first: one of the two started ones, not one of the two untouched.
    assert judge(project, crowd[2]) in {started, second}


def test_higher_priority_batches_come_first(project, crowd, import_rows):
    low = import_rows(prompt_line("low-1"), prompt_line("low-2"))
    high = import_rows(prompt_line("high-1"))
    Batch.objects.filter(pk=high.pk).update(priority=10)
    picked = Comparison.objects.get(pk=judge(project, crowd[0]))
    assert picked.batch_id == high.pk
    Batch.objects.filter(pk=low.pk).update(priority=20)
    picked = Comparison.objects.get(pk=judge(project, crowd[1]))
    assert picked.batch_id == low.pk


def test_a_paused_batch_hands_out_nothing_and_resumes(project, crowd, import_rows):
    batch = import_rows(prompt_line("only"))
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.PAUSED)
    assert assignment_next(project=project, annotator=crowd[0]) is None
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.ACTIVE)
    assert assignment_next(project=project, annotator=crowd[0]) is not None


def test_changing_the_overlap_closes_and_reopens_comparisons(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    judge(project, crowd[0])
    set_policy(project, "breadth_first", overlap=1)
    overlap_changed(project=project)
    assert Comparison.objects.get().complete
    assert assignment_next(project=project, annotator=crowd[1]) is None
    set_policy(project, "breadth_first", overlap=2)
    overlap_changed(project=project)
    assert assignment_next(project=project, annotator=crowd[1]) is not None


def test_the_complete_rule_reads_the_same_in_the_orm_and_in_sql(project, import_rows):
    """queue_order renders the one rule twice: as the ORM's condition (submit, undo,
    invalidation, an overlap or stopping change, the home page) and as SQL text (the PL/pgSQL
    submit). Both give the same verdict on every row, for votes added, taken back or neither,
    for either side or none, with stopping off (margin 0) or on."""
    import_rows(
        *(prompt_line(f"p{i}") for i in range(5)), prompt_line("g", gold={"preferred": "c1"})
    )
    ids = list(Comparison.objects.order_by("is_gold", "id").values_list("id", flat=True))
    # (votes_a, votes_b, ties): 0-0, 1-0, 2-0-1, 1-2, 3-1, and the gold item 4-0-1.
    tallies = [(0, 0, 0), (1, 0, 0), (2, 0, 1), (1, 2, 0), (3, 1, 0), (4, 0, 1)]
    for pk, (a, b, tie) in zip(ids, tallies, strict=True):
        Comparison.objects.filter(pk=pk).update(
            judgment_count=a + b + tie, votes_a=a, votes_b=b, votes_tie=tie
        )
    gold = Comparison.objects.get(is_gold=True)
    assert gold.judgment_count == 5  # enough for any overlap below: gold is never complete
    for overlap in range(1, 6):
        for margin in range(4):
            for added in (-1, 0, 1):
                for option in (None, "a", "b", "tie"):
                    orm = set(
                        Comparison.objects.filter(
                            complete_condition(
                                overlap=overlap, margin=margin, votes_added=added, option=option
                            )
                        ).values_list("id", flat=True)
                    )
                    sql = complete_sql(
                        overlap=str(overlap),
                        margin=str(margin),
                        votes_added=added,
                        option=f"'{option}'" if option else "NULL",
                    )
                    raw = set(
                        Comparison.objects.filter(
                            ExpressionWrapper(RawSQL(sql, []), BooleanField())  # noqa: S611
                        ).values_list("id", flat=True)
                    )
                    expected = set()
                    for c in Comparison.objects.all():
                        a = c.votes_a + (added if option == "a" else 0)
                        b = c.votes_b + (added if option == "b" else 0)
                        decided = margin > 0 and abs(a - b) >= margin
                        if not c.is_gold and (c.judgment_count + added >= overlap or decided):
                            expected.add(c.pk)
                    assert orm == raw == expected, (overlap, margin, added, option, sql)
    # The margin as the project's column (the home page's count): the same verdicts.
    for confidence, margin in ((None, 0), (0.8, 1), (0.9, 2)):
        project.stop_confidence = confidence
        project.save()
        assert project.stop_margin == margin
        by_column = set(
            Comparison.objects.filter(
                complete_condition(overlap=F("project__overlap"), margin=F("project__stop_margin"))
            ).values_list("id", flat=True)
        )
        by_value = set(
            Comparison.objects.filter(
                complete_condition(overlap=project.overlap, margin=margin)
            ).values_list("id", flat=True)
        )
        assert by_column == by_value, confidence
    # An UPDATE's value, from the same rule (gold: never).
    Comparison.objects.update(complete=complete_value(overlap=3, margin=0))
    complete = Comparison.objects.filter(complete=True).values_list("judgment_count", flat=True)
    assert sorted(complete) == [3, 3, 4]
    Comparison.objects.update(complete=complete_value(overlap=5, margin=2))
    complete = Comparison.objects.filter(complete=True).values_list("votes_a", "votes_b")
    assert sorted(complete) == [(2, 0), (3, 1)]


def test_the_takes_votes_rule_reads_the_same_in_the_orm_and_in_sql(project, import_rows):
    """The pick's and the prefetch's "a new lease may take it" is queue_order's OPEN_ORDINARY
    with a free slot, rendered as SQL: the same verdict as the ORM's on every row."""
    import_rows(
        *(prompt_line(f"p{i}") for i in range(6)), prompt_line("g", gold={"preferred": "c1"})
    )
    for n, pk in enumerate(
        Comparison.objects.order_by("is_gold", "id").values_list("id", flat=True)
    ):
        Comparison.objects.filter(pk=pk).update(
            judgment_count=n % 3, lease_count=n // 3, complete=n == 4
        )
    for overlap in range(1, 5):
        orm = set(
            Comparison.objects.filter(OPEN_ORDINARY)
            .alias(filled=FILLED)
            .filter(filled__lt=overlap)
            .values_list("id", flat=True)
        )
        sql = takes_votes_sql(overlap=str(overlap), alias="batches_comparison")
        raw = set(
            Comparison.objects.filter(
                ExpressionWrapper(RawSQL(sql, []), BooleanField())  # noqa: S611 (our text)
            ).values_list("id", flat=True)
        )
        expected = {
            c.pk
            for c in Comparison.objects.all()
            if not c.is_gold and not c.complete and c.judgment_count + c.lease_count < overlap
        }
        assert orm == raw == expected, (overlap, sql)
        assert expected and expected != set(Comparison.objects.values_list("id", flat=True))


# -- caps ------------------------------------------------------------------------------------


def test_the_project_cap_stops_an_annotator_with_a_reason(api, project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(5)))
    project.annotator_cap = 2
    project.save()
    judge(project, crowd[0])
    judge(project, crowd[0])
    with pytest.raises(AnnotatorBlocked, match="cap of 2"):
        assignment_next(project=project, annotator=crowd[0])
    response = api(crowd[0]).post(NEXT)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "No more work for you in this project: you reached the project's cap of 2 judgments."
    )
    assert assignment_next(project=project, annotator=crowd[1]) is not None


def test_a_batch_cap_sends_the_annotator_to_other_batches(project, crowd, import_rows):
    capped = import_rows(prompt_line("a1"), prompt_line("a2"), prompt_line("a3"))
    other = import_rows(prompt_line("b1"))
    Batch.objects.filter(pk=capped.pk).update(annotator_cap=1, priority=5)
    first = Comparison.objects.get(pk=judge(project, crowd[0]))
    assert first.batch_id == capped.pk
    second = Comparison.objects.get(pk=judge(project, crowd[0]))
    assert second.batch_id == other.pk
    assert assignment_next(project=project, annotator=crowd[0]) is None


def second_lease(project, user):
    """A second open lease of the same annotator, as two next requests racing each other leave
    them (both found no open lease, and took two comparisons)."""
    taken = Assignment.objects.filter(annotator=user).values_list("comparison_id", flat=True)
    comparison = Comparison.objects.exclude(pk__in=taken).order_by("pk").first()
    now = timezone.now()
    lease = Assignment.objects.create(
        project=project,
        comparison=comparison,
        annotator=user,
        left=comparison.candidate_a,
        right=comparison.candidate_b,
        created_at=now,
        expires_at=now + timedelta(minutes=10),
    )
    Comparison.objects.filter(pk=comparison.pk).update(lease_count=1)
    return lease


@pytest.mark.parametrize("cap_on", ["project", "batch"])
def test_two_leases_taken_at_once_cannot_both_pass_a_cap(api, project, crowd, import_rows, cap_on):
    batch = import_rows(*(prompt_line(f"p{i}") for i in range(4)))
    if cap_on == "project":
        project.annotator_cap = 1
        project.save()
    else:
        Batch.objects.filter(pk=batch.pk).update(annotator_cap=1)
    first = assignment_next(project=project, annotator=crowd[0])
    second = second_lease(project, crowd[0])
    client = api(crowd[0])
    assert client.post(judge_url(first.pk), {"choice": "left"}, format="json").status_code == 201
    response = client.post(judge_url(second.pk), {"choice": "left"}, format="json")
    assert response.status_code == 409
    assert f"cap of 1 judgments in this {cap_on}" in response.json()["detail"]
    assert Judgment.objects.filter(annotator=crowd[0]).count() == 1
    # The refused lease is closed and its slot is free for others at once.
    second.refresh_from_db()
    assert second.status == AssignmentStatus.EXPIRED and second.closed_at is not None
    assert Comparison.objects.get(pk=second.comparison_id).lease_count == 0
    member = Membership.objects.get(project=project, user=crowd[0])
    assert member.judgment_count == 1
    assert assignment_next(project=project, annotator=crowd[1]) is not None


def test_a_late_judgment_past_the_cap_is_refused_too(project, crowd, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(4)))
    project.annotator_cap = 1
    project.save()
    fresh = assignment_next(project=project, annotator=crowd[0])
    stale = second_lease(project, crowd[0])
    Assignment.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(1))
    assert leases_reclaim_expired() == 1
    judgment_submit(assignment_id=fresh.pk, annotator=crowd[0], choice="left")
    with pytest.raises(JudgmentConflict, match="cap of 1 judgments in this project"):
        judgment_submit(assignment_id=stale.pk, annotator=crowd[0], choice="left")
    assert Judgment.objects.filter(annotator=crowd[0]).count() == 1


# -- skips -------------------------------------------------------------------------------------


def skip_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/skip/"


def test_a_skip_releases_the_lease_and_is_never_offered_again(api, project, crowd, import_rows):
    import_rows(prompt_line("only"))
    client = api(crowd[0])
    lease = client.post(NEXT).json()
    reason = project.skip_reasons[0]
    response = client.post(skip_url(lease["id"]), {"reason": reason}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["reason"] == reason
    again = client.post(skip_url(lease["id"]), {"reason": reason}, format="json")
    assert again.status_code == 200 and again.json() == response.json()
    comparison = Comparison.objects.get()
    assert (comparison.lease_count, comparison.skip_count) == (0, 1)
    assert Membership.objects.get(project=project, user=crowd[0]).skip_count == 1
    assert client.post(NEXT).status_code == 204
    # Others still get it.
    assert api(crowd[1]).post(NEXT).json()["comparison"] == comparison.pk


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reason": "bored"}, "reason must be one of"),
        ({"reason": ""}, "reason must be one of"),
        ({"reason": "other"}, "needs a note"),
        ({"reason": "other", "note": "  "}, "needs a note"),
        ({}, "reason"),
        ({"reason": ["x"]}, "reason"),
    ],
)
def test_a_skip_needs_a_known_reason(api, project, crowd, batch, body, message):
    lease = api(crowd[0]).post(NEXT).json()
    response = api(crowd[0]).post(skip_url(lease["id"]), body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert not Skip.objects.exists()


def test_a_project_without_skip_reasons_takes_a_skip_without_one(api, project, crowd, batch):
    project.skip_reasons = []
    project.save()
    lease = api(crowd[0]).post(NEXT).json()
    response = api(crowd[0]).post(skip_url(lease["id"]), {"reason": ""}, format="json")
    assert response.status_code == 201, response.content
    assert Skip.objects.get().reason == ""
    # "other", with a note, stays open to them.
    lease = api(crowd[0]).post(NEXT).json()
    response = api(crowd[0]).post(
        skip_url(lease["id"]), {"reason": "other", "note": "in Klingon"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_other_with_a_note_is_a_valid_skip(project, crowd, batch):
    lease = assignment_next(project=project, annotator=crowd[0])
    result = assignment_skip(
        assignment_id=lease.pk, annotator=crowd[0], reason="other", note="in Klingon"
    )
    assert (result.skip.reason, result.skip.note) == ("other", "in Klingon")


def test_a_judged_assignment_cannot_be_skipped_nor_a_skipped_one_judged(project, crowd, batch):
    lease = assignment_next(project=project, annotator=crowd[0])
    judgment_submit(assignment_id=lease.pk, annotator=crowd[0], choice="left")
    with pytest.raises(JudgmentConflict):
        assignment_skip(assignment_id=lease.pk, annotator=crowd[0], reason="other", note="x")
    other = assignment_next(project=project, annotator=crowd[0])
    assignment_skip(assignment_id=other.pk, annotator=crowd[0], reason="other", note="x")
    with pytest.raises(JudgmentConflict, match="skipped"):
        judgment_submit(assignment_id=other.pk, annotator=crowd[0], choice="left")


def test_another_annotators_assignment_cannot_be_skipped(api, project, crowd, batch):
    lease = api(crowd[0]).post(NEXT).json()
    response = api(crowd[1]).post(skip_url(lease["id"]), {"reason": "other", "note": "x"})
    assert response.status_code == 404


def test_skipping_a_reclaimed_lease_still_records_it(project, crowd, import_rows):
    import_rows(prompt_line("only"))
    past = timezone.now() - timedelta(hours=1)
    lease = assignment_next(project=project, annotator=crowd[0], now=past)
    leases_reclaim_expired()
    assignment_skip(assignment_id=lease.pk, annotator=crowd[0], reason="other", note="late")
    comparison = Comparison.objects.get()
    assert (comparison.lease_count, comparison.skip_count) == (0, 1)
    assert assignment_next(project=project, annotator=crowd[0]) is None


# -- gold items --------------------------------------------------------------------------------


def gold_line(pid, answer):
    row = prompt_line(pid)
    row["gold"] = {"preferred": "c1"} if answer == "c1" else answer
    return row


@pytest.fixture
def gold_project(project, import_rows):
    project.gold_rate = 0.2
    project.save()
    import_rows(
        *(gold_line(f"g{i}", ["c1", "tie", "both_bad"][i % 3]) for i in range(120)),
        *(prompt_line(f"o{i}") for i in range(300)),
    )
    return project


def test_gold_lines_become_gold_comparisons(project, import_rows):
    row = prompt_line("g", n=3)
    row["gold"] = {"preferred": "c2"}
    import_rows(row, gold_line("t", "tie"))
    answers = {
        (c.candidate_a.external_id, c.candidate_b.external_id, c.prompt.external_id): (
            c.is_gold,
            c.gold_answer,
        )
        for c in Comparison.objects.select_related("candidate_a", "candidate_b", "prompt")
    }
    assert answers == {
        ("c1", "c2", "g"): (True, "b"),
        ("c1", "c3", "g"): (False, ""),
        ("c2", "c3", "g"): (True, "a"),
        ("c1", "c2", "t"): (True, "tie"),
    }


def test_a_preference_names_only_a_pair_gold_or_not(project, crowd, import_rows):
    """The page prefetches pairs only (comparison_peek gives listwise projects none), so a
    `prefer` naming a comparison of a whole list is passed over, gold or not, on either
    database (annotate_next and the ORM path agree)."""
    import_rows(gold_line("g0", "c1"), prompt_line("p0"))
    gold = Comparison.objects.get(is_gold=True)
    Comparison.objects.filter(pk=gold.pk).update(
        candidate_ids=[gold.candidate_a_id, gold.candidate_b_id]
    )
    prefer = Preference(gold.pk, swap=False)
    lease = assignment_next(project=project, annotator=crowd[0], prefer=prefer)
    assert lease is not None
    assert lease.comparison_id != gold.pk and not lease.comparison.is_gold


def test_gold_items_come_at_the_gold_rate_never_twice(gold_project, crowd):
    user = crowd[0]
    gold = seen_gold = 0
    seen = set()
    for _ in range(300):
        lease = assignment_next(project=gold_project, annotator=user)
        assert lease.comparison_id not in seen
        seen.add(lease.comparison_id)
        gold += lease.comparison.is_gold
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="tie")
    # 300 draws at 20%: mean 60, sd 6.9; this band is 4 sd wide each side.
    assert 32 <= gold <= 88, gold
    member = Membership.objects.get(project=gold_project, user=user)
    seen_gold = Judgment.objects.filter(annotator=user, comparison__is_gold=True).count()
    assert member.gold_answered == seen_gold == gold


def test_gold_items_take_no_slot_of_the_overlap(project, crowd, import_rows):
    project.gold_rate = 1.0
    project.save()
    import_rows(gold_line("g", "c1"), prompt_line("o"))
    for user in crowd[:5]:  # more than the overlap of 3
        lease = assignment_next(project=project, annotator=user)
        assert lease.comparison.is_gold
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    gold = Comparison.objects.get(is_gold=True)
    assert (gold.judgment_count, gold.lease_count, gold.complete) == (5, 0, False)


def test_gold_accuracy_is_kept_and_a_poor_annotator_is_stopped(api, project, crowd, import_rows):
    project.gold_rate = 1.0
    project.gold_min_accuracy = 0.8
    project.gold_min_answers = 3
    project.save()
    import_rows(*(gold_line(f"g{i}", "tie") for i in range(5)), prompt_line("o"))
    user = crowd[0]
    for choice in ["tie", "left", "left"]:  # 1 of 3 right
        lease = assignment_next(project=project, annotator=user)
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
    member = Membership.objects.get(project=project, user=user)
    assert (member.gold_answered, member.gold_correct) == (3, 1)
    assert "gold accuracy 33%" in member.blocked_reason()
    response = api(user).post(NEXT)
    assert response.status_code == 403
    assert "below the project's minimum of 80%" in response.json()["detail"]
    good = crowd[1]
    for _ in range(3):
        lease = assignment_next(project=project, annotator=good)
        judgment_submit(assignment_id=lease.pk, annotator=good, choice="tie")
    assert api(good).post(NEXT).status_code == 200


def test_exports_leave_gold_items_out(api, bob, project, crowd, import_rows):
    project.gold_rate = 1.0
    project.save()
    import_rows(gold_line("g", "c1"), prompt_line("o"))
    for user in crowd[:2]:
        for _ in range(2):
            judge(project, user, option="a")
    for fmt in ("trl", "judgments"):
        body = b"".join(
            api(bob).get("/api/v1/projects/demo/export/", {"format": fmt}).streaming_content
        ).decode()
        assert '"g"' not in body and '"o"' in body


def test_a_gold_lease_that_expires_gives_back_no_slot(project, crowd, import_rows):
    project.gold_rate = 1.0
    project.save()
    import_rows(gold_line("g", "c1"), prompt_line("o"))
    past = timezone.now() - timedelta(hours=1)
    lease = assignment_next(project=project, annotator=crowd[0], now=past)
    assert lease.comparison.is_gold
    assert leases_reclaim_expired() == 1
    gold = Comparison.objects.get(is_gold=True)
    assert gold.lease_count == 0
    assert lease.status == AssignmentStatus.OPEN  # the object; the row is expired now
    # The same gold item is not handed to the same annotator again, even after expiry.
    again = assignment_next(project=project, annotator=crowd[0])
    assert again is None or again.comparison_id != gold.pk


def test_a_malformed_gold_field_is_explained(import_rows):
    from apps.batches.import_format import ImportFormatError

    row = prompt_line()
    row["gold"] = {"preferred": "nobody"}
    with pytest.raises(ImportFormatError) as info:
        import_rows(row)
    assert "not one of the candidates" in info.value.errors[0].error


def test_a_vote_redraws_the_rank_so_early_work_does_not_gather_at_the_head(
    project, crowd, import_rows
):
    """Breadth first hands out each level in rank order. If ranks stayed, the comparisons one
    early annotator judged would be the head of the next level, and they would scan past all of
    them there. Each vote draws a new rank, so their share of the head is their share overall."""
    import_rows(*(prompt_line(f"p{i}") for i in range(200)))
    project.overlap = 2
    project.save()
    early = crowd[0]
    mine = [judge(project, early) for _ in range(100)]  # the 100 lowest ranks of level 0
    level_one = list(
        Comparison.objects.filter(judgment_count=1).order_by("rank").values_list("id", flat=True)
    )
    head = set(level_one[:50])
    # Their 100 of 100 at level 1; what matters is that the order is not theirs-first by rank
    # of level 0: the head of level 1 is a random half of them, not the first 50 they judged.
    assert head != set(mine[:50])
    import_rows(*(prompt_line(f"q{i}") for i in range(100)))
    for user in crowd[1:3]:
        for _ in range(50):
            judge(project, user)
    level_one = list(
        Comparison.objects.filter(judgment_count=1).order_by("rank").values_list("id", flat=True)
    )
    theirs = sum(1 for comparison in level_one[:40] if comparison in set(mine))
    share = sum(1 for comparison in level_one if comparison in set(mine)) / len(level_one)
    # Their share of the head is about their share of the level (not all of it).
    assert theirs < 40
    assert abs(theirs / 40 - share) < 0.35


def probe(project, user):
    """Which probe of the pick (annotate_pick on PostgreSQL, the same statements one by one
    elsewhere) finds the user's next (1 the policy's head, 2 breadth first, 0 the exact one),
    and the comparison."""
    from apps.judging.queue.sql_pick import comparison_pick

    picked = comparison_pick(project=project, annotator=user, rank_from=0)
    return picked.probe, picked.comparison_id


def test_a_head_of_ones_own_work_is_stepped_over_in_bounded_probes(
    project, crowd, import_rows, monkeypatch
):
    """Depth first, and the only started comparisons are this annotator's own: the policy's
    head is all theirs. The pick must not scan all of it: a bounded probe in breadth-first
    order finds them a fresh comparison, and the exact (unbounded) probe never runs."""
    from apps.judging.queue import policy

    monkeypatch.setattr(policy, "WINDOW", 3)

    import_rows(*(prompt_line(f"p{i}") for i in range(12)))
    set_policy(project, "depth_first")
    mine = {judge(project, crowd[0]) for _ in range(1)}
    set_policy(project, "breadth_first")
    mine |= {judge(project, crowd[0]) for _ in range(5)}  # six at level 1, all theirs
    set_policy(project, "depth_first")
    step, picked = probe(project, crowd[0])
    assert step == 2 and picked not in mine
    others_step, others_pick = probe(project, crowd[1])
    assert others_step == 1 and others_pick in mine
    lease = assignment_next(project=project, annotator=crowd[0])
    assert lease is not None and lease.comparison_id not in mine
    assert lease.comparison.judgment_count == 0
    # Others still get depth first: the started comparisons (crowd[0]'s new lease counts as
    # started too: filled is votes plus leases).
    assert judge(project, crowd[1]) in mine | {lease.comparison_id}


def test_the_exact_probe_finds_what_the_bounded_ones_cannot_reach(
    project, crowd, import_rows, monkeypatch
):
    """Breadth first, and the head of the order is all comparisons this annotator skipped:
    the bounded probe finds nothing there, and the exact probe finds the rest ("nothing left"
    is never said of rows a bounded probe did not reach)."""
    from apps.judging.queue import policy

    monkeypatch.setattr(policy, "WINDOW", 3)
    import_rows(*(prompt_line(f"p{i}") for i in range(8)))
    skipped = set()
    for _ in range(6):
        lease = assignment_next(project=project, annotator=crowd[0])
        assignment_skip(assignment_id=lease.pk, annotator=crowd[0], reason="other", note="no")
        skipped.add(lease.comparison_id)
    step, picked = probe(project, crowd[0])  # breadth first: the project's default
    assert step == 0 and picked not in skipped
    rest = set()
    while (lease := assignment_next(project=project, annotator=crowd[0])) is not None:
        rest.add(lease.comparison_id)
        assignment_skip(assignment_id=lease.pk, annotator=crowd[0], reason="other", note="no")
    assert len(rest) == 2 and not rest & skipped
