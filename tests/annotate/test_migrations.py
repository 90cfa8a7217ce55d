from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db
def test_migrate_installs_the_queue_functions_and_may_run_again():
    """The queue's functions come with every migrate, replaced in place: a second run (an
    upgrade, a redeploy) leaves exactly one of each."""
    from django.db import connection

    from apps.judging.queue import FUNCTION_NAMES

    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, count(*) FROM pg_proc WHERE proname = ANY(%s) GROUP BY proname",
            [list(FUNCTION_NAMES)],
        )
        assert dict(cursor.fetchall()) == dict.fromkeys(FUNCTION_NAMES, 1)


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_pick_refuses_an_unknown_policy():
    from django.db import DatabaseError, connection

    with (
        pytest.raises(DatabaseError, match="unknown assignment policy"),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT * FROM annotate_pick(1, 1, 'alphabetical', 3, 0, 256)")


def test_the_queue_s_inserts_set_every_column_a_judgment_or_a_lease_requires():
    """The judgment's INSERT names its columns (queue.sql_submit_steps.JUDGMENT_VALUES, which
    both paths run), and so does the new lease's (queue.sql_next.LEASE_VALUES, on every
    database): a new NOT NULL column without a database default must be added there, or they
    would refuse every judgment or every lease."""
    from apps.judging.models import Assignment, Judgment
    from apps.judging.queue import sql_next, sql_submit_steps
    from apps.judging.queue.statements import unset_required_columns

    assert unset_required_columns(Judgment, sql_submit_steps.JUDGMENT_VALUES) == []
    assert unset_required_columns(Assignment, sql_next.LEASE_VALUES) == []
