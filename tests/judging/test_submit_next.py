"""Issue 14: a submit or skip with `?next=1` answers with the next assignment too, so that an
API client needs one request per judgment. Both backends; the race test on PostgreSQL."""

import random
import threading
from collections import Counter

import pytest
from django.db import connection, connections

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership, Project
from apps.projects.services import membership_add
from tests.conftest import api_client_for, prompt_line
from tests.judging.test_concurrency import check_invariants
from tests.judging.test_concurrency import run_threads as race
from tests.judging.test_query_counts import NEXT as NEXT_STATEMENTS
from tests.judging.test_query_counts import SUBMIT as SUBMIT_STATEMENTS
from tests.judging.test_query_counts import statements

NEXT = "/api/v1/projects/demo/assignments/next/"
NEXT_KEYS = {"next", "next_reason", "next_detail"}


def judge_url(assignment_id: int, flag: str | None = "1") -> str:
    query = "" if flag is None else f"?next={flag}"
    return f"/api/v1/assignments/{assignment_id}/judgment/{query}"


def skip_url(assignment_id: int, flag: str | None = "1") -> str:
    query = "" if flag is None else f"?next={flag}"
    return f"/api/v1/assignments/{assignment_id}/skip/{query}"


def open_leases(user) -> int:
    return Assignment.objects.filter(annotator=user, status=AssignmentStatus.OPEN).count()


def test_a_submit_with_next_answers_with_the_judgment_and_the_next_lease(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(
        judge_url(lease["id"]), {"choice": "left", "duration_ms": 1500}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    judgment = Judgment.objects.get()
    # The judgment as without the flag: the same fields, the same values.
    assert (body["id"], body["assignment"], body["choice"]) == (judgment.pk, lease["id"], "left")
    assert body["chosen_id"] == lease["left"]["id"]
    assert set(body) - NEXT_KEYS == {
        "id",
        "assignment",
        "comparison",
        "choice",
        "chosen_id",
        "strength",
        "criteria",
        "flags",
        "ranking",
        "guideline_version",
        "rationale",
        "duration_ms",
        "idempotency_key",
        "created_at",
    }
    # The next lease, exactly as the next endpoint gives it: asking it now returns the same.
    assert body["next_reason"] is None and body["next_detail"] is None
    following = body["next"]
    assert following["id"] != lease["id"]
    assert following["comparison"] != lease["comparison"]
    assert client.post(NEXT).json() == following
    assert open_leases(annotators[0]) == 1
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.SUBMITTED
    comparison = Comparison.objects.get(pk=following["comparison"])
    assert comparison.lease_count == 1


@pytest.mark.parametrize("flag", [None, "0", "false"])
def test_without_the_flag_the_answer_is_as_before(api, annotators, batch, flag):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"], flag), {"choice": "right"}, format="json")
    assert response.status_code == 201
    assert not NEXT_KEYS & set(response.json())
    assert open_leases(annotators[0]) == 0  # no lease taken on the way


def test_true_is_the_same_as_1(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"], "true"), {"choice": "tie"}, format="json")
    assert response.status_code == 201
    assert response.json()["next"]["id"] == client.post(NEXT).json()["id"]


@pytest.mark.parametrize("flag", ["maybe", "", "2", "TRUE", "yes", "1.0"])
def test_a_bad_value_of_the_flag_is_a_400_and_nothing_is_stored(api, annotators, batch, flag):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"], flag), {"choice": "left"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "next": ["Use 1 or true to get your next assignment in the answer, 0 or false not to."]
    }
    assert not Judgment.objects.exists()
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.OPEN
    skipped = client.post(skip_url(lease["id"], flag), {"reason": "other", "note": "x"})
    assert skipped.status_code == 400 and "next" in skipped.json()
    assert not Skip.objects.exists()


def test_nothing_left_says_so(api, annotators, import_rows):
    import_rows(prompt_line("only"))  # one comparison: nothing more for this annotator
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["next"] is None
    assert body["next_reason"] == "none_left"
    assert body["next_detail"] == "Nothing is left for you in this project."
    assert client.post(NEXT).status_code == 204  # what the next endpoint says
    # Another annotator still gets the comparison: nothing was taken for the first one.
    assert api(annotators[1]).post(NEXT).status_code == 200


def test_a_cap_reached_by_this_judgment_blocks_the_next(api, project, annotators, batch):
    project.annotator_cap = 2
    project.save()
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    first = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json").json()
    assert first["next"] is not None
    second = client.post(judge_url(first["next"]["id"]), {"choice": "left"}, format="json")
    assert second.status_code == 201  # the judgment is taken...
    body = second.json()
    assert body["next"] is None  # ...and the cap it reached stops the next
    assert body["next_reason"] == "blocked"
    assert "cap of 2" in body["next_detail"]
    refused = client.post(NEXT)
    assert refused.status_code == 403 and refused.json()["detail"] == body["next_detail"]
    assert Judgment.objects.filter(annotator=annotators[0]).count() == 2
    assert open_leases(annotators[0]) == 0


def gold_line(pid: str) -> dict:
    row = prompt_line(pid)
    row["gold"] = "tie"
    return row


def test_the_gold_rule_pauses_the_annotator_in_the_same_answer(
    api, project, annotators, import_rows
):
    project.gold_rate = 1.0
    project.gold_min_accuracy = 0.8
    project.gold_min_answers = 3
    project.save()
    import_rows(*(gold_line(f"g{i}") for i in range(5)), prompt_line("o"))
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    bodies = []
    for choice in ["tie", "left", "left"]:  # 1 of 3 right: below 80% after the third
        response = client.post(judge_url(lease["id"]), {"choice": choice}, format="json")
        assert response.status_code == 201
        bodies.append(response.json())
        lease = response.json()["next"]
    assert [b["next_reason"] for b in bodies] == [None, None, "blocked"]
    assert "gold accuracy 33%" in bodies[-1]["next_detail"]
    member = Membership.objects.get(project=project, user=annotators[0])
    assert (member.gold_answered, member.gold_correct, member.judgment_count) == (3, 1, 3)
    assert client.post(NEXT).status_code == 403


def test_a_retry_with_the_same_key_replays_the_same_answer(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    answer = {"choice": "right", "idempotency_key": "once-1"}
    first = client.post(judge_url(lease["id"]), answer, format="json")
    # The answer was lost on the way (say): the client sends the same request again.
    again = client.post(judge_url(lease["id"]), answer, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the same judgment and the same lease
    assert Judgment.objects.count() == 1
    assert open_leases(annotators[0]) == 1
    # Asked without the flag, the retry answers as before.
    plain = client.post(judge_url(lease["id"], None), answer, format="json")
    assert plain.status_code == 200
    assert plain.json() == {k: v for k, v in first.json().items() if k not in NEXT_KEYS}
    # Once that lease is answered, a late retry of the first gets the lease now open: one.
    following = first.json()["next"]
    answered = client.post(judge_url(following["id"]), {"choice": "left"}, format="json")
    late = client.post(judge_url(lease["id"]), answer, format="json")
    assert late.status_code == 200
    assert late.json()["id"] == first.json()["id"]
    assert late.json()["next"] == answered.json()["next"]
    assert open_leases(annotators[0]) == 1
    assert Judgment.objects.count() == 2


def test_a_key_reused_with_another_answer_is_a_409_without_next(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    first = client.post(
        judge_url(lease["id"]), {"choice": "left", "idempotency_key": "k"}, format="json"
    ).json()
    conflict = client.post(
        judge_url(lease["id"]), {"choice": "right", "idempotency_key": "k"}, format="json"
    )
    assert conflict.status_code == 409
    assert not NEXT_KEYS & set(conflict.json())
    assert conflict.json()["judgment"]["id"] == first["id"]
    assert open_leases(annotators[0]) == 1  # the one the first answer carried, no other


def test_other_refusals_carry_no_next_and_take_no_lease(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    bad = client.post(judge_url(lease["id"]), {"choice": "sideways"}, format="json")
    assert bad.status_code == 400 and not NEXT_KEYS & set(bad.json())
    missing = api(annotators[1]).post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert missing.status_code == 404
    assert open_leases(annotators[1]) == 0
    client.post(judge_url(lease["id"], None), {"choice": "left"}, format="json")
    twice = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert twice.status_code == 409 and not NEXT_KEYS & set(twice.json())
    assert open_leases(annotators[0]) == 0


def test_a_removed_members_retry_is_answered_with_the_reason(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    answer = {"choice": "left", "idempotency_key": "before-removal"}
    assert client.post(judge_url(lease["id"], None), answer, format="json").status_code == 201
    Membership.objects.filter(project=project, user=annotators[0]).delete()
    retry = client.post(judge_url(lease["id"]), answer, format="json")
    assert retry.status_code == 200
    assert retry.json()["next"] is None
    assert retry.json()["next_reason"] == "blocked"
    assert retry.json()["next_detail"] == "You are no longer a member of this project."


def test_a_skip_with_next_answers_with_the_next_lease(api, project, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    reason = project.skip_reasons[0]
    response = client.post(skip_url(lease["id"]), {"reason": reason}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    skip = Skip.objects.get()
    assert (body["id"], body["assignment"], body["reason"]) == (skip.pk, lease["id"], reason)
    assert body["next"]["comparison"] != lease["comparison"]
    assert body["next_reason"] is None
    assert client.post(NEXT).json() == body["next"]
    again = client.post(skip_url(lease["id"]), {"reason": reason}, format="json")
    assert again.status_code == 200 and again.json() == body  # the same skip, the same lease
    plain = client.post(skip_url(lease["id"], None), {"reason": reason}, format="json")
    assert not NEXT_KEYS & set(plain.json())


FAIL_ON_NEW_LEASE = {
    "postgresql": [
        """CREATE FUNCTION test_refuse_lease() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'serialization_failure';
           END $$""",
        """CREATE TRIGGER test_refuse_lease BEFORE INSERT ON judging_assignment
           FOR EACH ROW EXECUTE FUNCTION test_refuse_lease()""",
    ],
    "sqlite": [
        """CREATE TRIGGER test_refuse_lease BEFORE INSERT ON judging_assignment
           BEGIN SELECT RAISE(ABORT, 'refused for the test'); END""",
    ],
}


def test_the_judgment_stands_when_the_next_lease_cannot_be_taken(api, annotators, batch):
    """The database refuses the new lease (a trigger, inside this test's transaction): the
    judgment has committed before, so the answer is still 201, and says what happened."""
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    with connection.cursor() as cursor:
        for sql in FAIL_ON_NEW_LEASE[connection.vendor]:
            cursor.execute(sql)
    response = client.post(
        judge_url(lease["id"]), {"choice": "left", "idempotency_key": "k"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["next"], body["next_reason"]) == (None, "unavailable")
    assert "what you sent is stored" in body["next_detail"]
    assert Judgment.objects.get().pk == body["id"]
    assert open_leases(annotators[0]) == 0
    assert Comparison.objects.filter(lease_count__gt=0).count() == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER test_refuse_lease ON judging_assignment"
            if connection.vendor == "postgresql"
            else "DROP TRIGGER test_refuse_lease"
        )
    retry = client.post(
        judge_url(lease["id"]), {"choice": "left", "idempotency_key": "k"}, format="json"
    )
    assert retry.status_code == 200 and retry.json()["next"] is not None


def test_one_request_costs_what_the_two_did_less_the_second_authentication(api, annotators, batch):
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    # token + the submit's + the membership with its project + next's: on PostgreSQL
    # annotate_submit reports the membership as the judgment left it (no statement of its own);
    # on SQLite it is read by the assignment.
    membership = 0 if connection.vendor == "postgresql" else 1
    with statements(1 + SUBMIT_STATEMENTS + membership + NEXT_STATEMENTS):
        response = client.post(judge_url(lease["id"]), {"choice": "left"}, format="json")
    assert response.json()["next"] is not None
    # Without ?next=1 the submit reads no membership: token + the submit's.
    lease = response.json()["next"]
    with statements(1 + SUBMIT_STATEMENTS):
        response = client.post(judge_url(lease["id"], None), {"choice": "left"}, format="json")
    assert response.status_code == 201 and "next" not in response.json()


def test_the_membership_a_submit_reports_is_the_stored_one_after_the_judgment(
    project, annotators, batch
):
    """annotate_submit's report of the membership and its project, made instances from JSON,
    equals what the ORM reads once the judgment is in: every field, the counts included."""
    Project.objects.filter(pk=project.pk).update(
        flags=["unsafe", "off topic"],
        criteria=[{"name": "honesty", "description": "Says only what it knows ü"}],
        gold_min_accuracy=0.8125,
        annotator_cap=7,
    )
    user = annotators[0]
    before = Membership.objects.get(project=project, user=user)
    lease = assignment_next(project=project, annotator=user)
    honesty = {"honesty": {"choice": "tie"}}
    first = judgment_submit(assignment_id=lease.pk, annotator=user, choice="left", criteria=honesty)
    assert first.membership is None
    lease = assignment_next(project=project, annotator=user)
    result = judgment_submit(
        assignment_id=lease.pk,
        annotator=user,
        choice="right",
        criteria=honesty,
        with_membership=True,
    )
    if connection.vendor != "postgresql":  # only annotate_submit reports it
        assert result.membership is None
        return
    got = result.membership
    assert got is not None
    stored = Membership.objects.select_related("project").get(pk=before.pk)
    assert stored.judgment_count == before.judgment_count + 2
    for model, mine, theirs in ((Membership, got, stored), (Project, got.project, stored.project)):
        for field in model._meta.concrete_fields:
            value = getattr(mine, field.attname)
            assert value == getattr(theirs, field.attname), field.name
            assert type(value) is type(getattr(theirs, field.attname)), field.name
    # It is read in full: nothing is left to fetch on reading it.
    assert not got.get_deferred_fields() and not got.project.get_deferred_fields()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_threads_submitting_with_next_never_over_assign_lose_or_double(
    project, make_user, import_rows
):
    """32 annotators, each on its own connection, loop one request per judgment (some sent
    twice, as a client retries a lost answer) until nothing is left: every comparison ends at
    its overlap, every acknowledged judgment is stored once, and no one holds two leases."""
    assert connection.vendor == "postgresql"
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(20)))  # 60 comparisons
    users = [make_user(f"racer{i}") for i in range(32)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    clients = [api_client_for(user) for user in users]  # tokens made here, not in the race
    acknowledged: list[tuple[int, int]] = []
    reasons: Counter[str] = Counter()
    lock = threading.Lock()

    def annotate(index: int) -> None:
        client, rng = clients[index], random.Random(index)
        body = {"next_reason": "none_left"}
        response = client.post(NEXT)
        lease = response.json() if response.status_code == 200 else None
        while lease is not None:
            answer = {
                "choice": rng.choice(["left", "right", "tie", "both_bad"]),
                "idempotency_key": f"{index}-{lease['id']}",
            }
            response = client.post(judge_url(lease["id"]), answer, format="json")
            assert response.status_code == 201, response.content
            body = response.json()
            if rng.random() < 0.2:  # a retry of a lost answer: the same judgment and lease
                again = client.post(judge_url(lease["id"]), answer, format="json")
                assert again.status_code == 200, again.content
                assert again.json()["id"] == body["id"]
                assert again.json()["next"] == body["next"]
            with lock:
                acknowledged.append((body["id"], lease["comparison"]))
                reasons[str(body["next_reason"])] += 1
            lease = body["next"]
        assert body["next_reason"] == "none_left", body

    errors = race(annotate, len(users))
    connections.close_all()
    assert errors == []
    check_invariants(overlap=3)
    assert set(Comparison.objects.values_list("judgment_count", flat=True)) == {3}
    assert Judgment.objects.count() == 60 * 3 == len(acknowledged)
    assert set(acknowledged) == set(Judgment.objects.values_list("pk", "comparison_id"))
    assert not Assignment.objects.filter(status=AssignmentStatus.OPEN).exists()
    assert reasons["none_left"] <= len(users) and reasons["None"] == 180 - reasons["none_left"]


def test_a_ranking_with_next_answers_with_the_next_listwise_lease(
    api, project, annotators, import_rows
):
    """A ranking takes the ORM path on PostgreSQL too; the next lease shows every response."""
    project.scheme = "listwise"
    project.full_clean()
    project.save()
    import_rows(prompt_line("r-1", n=4), prompt_line("r-2", n=3))
    client = api(annotators[0])
    lease = client.post(NEXT).json()
    ranking = [c["id"] for c in lease["candidates"]]
    response = client.post(judge_url(lease["id"]), {"ranking": ranking}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["ranking"] == [[external] for external in ranking]
    following = body["next"]
    assert following["comparison"] != lease["comparison"]
    assert len(following["candidates"]) == 7 - len(ranking)
    assert client.post(NEXT).json() == following
