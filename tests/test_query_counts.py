"""The hot paths run a fixed, small number of queries, whatever the history."""

from contextlib import contextmanager
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.judging.services import assignment_next, judgment_submit
from apps.projects.models import Membership
from tests.conftest import prompt_line

# PostgreSQL picks in one statement; the SQLite fallback lists the active batches first.
PICK = 1 if connection.vendor == "postgresql" else 2


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
            with statements(5 + PICK):
                lease = assignment_next(project=project, annotator=user, membership=member)
            with statements(2):  # its id, then the lease with what it shows
                assert assignment_next(project=project, annotator=user).pk == lease.pk
            with statements(5):
                judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")


def test_reclaiming_on_the_way_adds_three_statements(project, annotators, batch):
    assignment_next(project=project, annotator=annotators[1], now=timezone.now() - timedelta(1))
    with statements(1 + 5 + PICK + 3):  # the membership, the usual 6, the reclaim's 3
        assignment_next(project=project, annotator=annotators[0])


def test_the_api_calls_add_only_authentication_and_lookup(api, annotators, batch):
    client = api(annotators[0])
    # token + membership with its project + the service's 6
    with statements(7 + PICK):
        lease = client.post("/api/v1/projects/demo/assignments/next/").json()
    # token + the service's 5: the response needs nothing more
    with statements(6):
        response = client.post(
            f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": "left"}, format="json"
        )
    assert response.status_code == 201
