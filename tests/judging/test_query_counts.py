"""The hot paths run a fixed, small number of queries, whatever the history."""

from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership
from tests.conftest import prompt_line

ON_POSTGRES = connection.vendor == "postgresql"
# PostgreSQL: next is one call of annotate_next, which returns the lease with what it shows;
# submit is one call of annotate_submit (which reports the project's repeat rate: at 0 the
# consistency probe's draw costs nothing); a reclaim on the way happens inside the call.
# SQLite runs the same rules statement by statement: open lease, expired leases, then the pick's
# own (sql_pick: active batches, then the policy's head and its take in one statement), insert,
# slot, load (next); lock, insert, close, count, member's counts (submit; the locked lease has
# its project, so a repeat rate of 0 costs nothing more).
NEXT = 1 if ON_POSTGRES else 7
SUBMIT = 1 if ON_POSTGRES else 5
RECLAIM = 0 if ON_POSTGRES else 1  # sql_reclaim: the expire is in NEXT, then the slots back


@contextmanager
def statements(expected: int):
    """Asserts the number of SQL statements, not counting the test's own savepoints."""
    with CaptureQueriesContext(connection) as captured:
        yield
    sql = [q["sql"] for q in captured if "SAVEPOINT" not in q["sql"]]
    assert len(sql) == expected, "\n".join(sql)


def test_next_and_submit_cost_the_same_after_many_judgments(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(20)))
    user = annotators[0]
    member = Membership.objects.get(project=project, user=user)
    for round_ in range(3):
        for _ in range(1 if round_ == 0 else 10):
            with statements(NEXT):
                lease = assignment_next(project=project, annotator=user, membership=member)
            # PostgreSQL: the membership, then the call; SQLite: the lease's id, then the lease
            with statements(2):
                assert assignment_next(project=project, annotator=user).pk == lease.pk
            with statements(SUBMIT):
                judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")


def test_reclaiming_on_the_way_costs_no_round_trip_on_postgresql(project, annotators, batch):
    assignment_next(project=project, annotator=annotators[1], now=timezone.now() - timedelta(1))
    with statements(1 + NEXT + RECLAIM):  # the membership, the usual, the reclaim's
        assignment_next(project=project, annotator=annotators[0])


def test_the_api_calls_add_only_authentication_and_lookup(api, annotators, batch):
    client = api(annotators[0])
    # token + membership with its project + the service's
    with statements(2 + NEXT):
        lease = client.post("/api/v1/projects/demo/assignments/next/").json()
    # token + the service's: the response needs nothing more
    with statements(1 + SUBMIT):
        response = client.post(
            f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": "left"}, format="json"
        )
    assert response.status_code == 201


def _sql(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured if "SAVEPOINT" not in q["sql"]]


def _judge_some(project, users, rounds: int) -> None:
    """Each user judges up to `rounds` comparisons, as the project's scheme asks."""
    for user in users:
        for _ in range(rounds):
            lease = assignment_next(project=project, annotator=user)
            if lease is None:
                break
            answer: dict[str, Any]
            if project.scheme == "listwise":
                answer = {"ranking": [f"c{i}" for i in range(1, 4)]}
            elif project.scheme == "graded":
                answer = {"strength": 2}
            else:
                answer = {"choice": "left"}
            judgment_submit(assignment_id=lease.pk, annotator=user, **answer)


@pytest.mark.parametrize("scheme", ["pairwise", "graded", "listwise"])
def test_the_judging_page_costs_the_same_after_many_judgments(
    client, project, annotators, import_rows, scheme
):
    project.scheme = scheme
    project.save()
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(30)))
    user = annotators[0]
    client.force_login(user)

    def page() -> list[str]:
        # A new lease each time: the annotator's last one is judged first.
        _judge_some(project, [user], 1)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/p/{project.slug}/")
        assert response.status_code == 200 and b"<form" in response.content
        return _sql(captured)

    _judge_some(project, annotators, 2)
    few = page()
    _judge_some(project, annotators, 12)
    many = page()
    assert Judgment.objects.filter(comparison__project=project).count() >= 30
    assert len(many) == len(few), "\n".join(many)


def test_the_judgment_list_costs_the_same_for_a_page_of_rankings(
    api, bob, project, annotators, import_rows
):
    project.scheme = "listwise"
    project.save()
    client = api(bob)

    def listed(expected_rows: int) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/api/v1/projects/{project.slug}/judgments/?page_size=100")
        results = response.json()["results"]
        assert len(results) == expected_rows
        assert all(row["ranking"] for row in results)
        return _sql(captured)

    import_rows(prompt_line("p0", n=3))
    _judge_some(project, annotators[:1], 1)
    one = listed(1)
    import_rows(*(prompt_line(f"q{i}", n=3) for i in range(40)))
    _judge_some(project, annotators, 40)
    hundred = listed(100)
    # token, project with the lead's membership, pseudonyms, the page, the page's responses
    assert len(hundred) == len(one) == 5, "\n".join(hundred)
