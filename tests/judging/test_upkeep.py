"""The queue's upkeep (apps/judging/queue/upkeep.py): VACUUM of the comparison and assignment rows
that leases and judgments leave dead, by the beat job `vacuum-queue` and `manage.py
vacuum_queue`; nothing to do on other databases."""

import logging
import time
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection

from annotate.celery import app as celery_app
from apps.batches.models import Comparison
from apps.judging.models import Assignment
from apps.judging.queue import (
    QUEUE_TABLES,
    VacuumInTransaction,
    assignment_next,
    judgment_submit,
    queue_tables_vacuum,
)
from apps.judging.tasks import queue_vacuum_task
from tests.conftest import ON_POSTGRES, prompt_line

COMPARISONS = Comparison._meta.db_table
ASSIGNMENTS = Assignment._meta.db_table


def dead_rows() -> dict[str, int]:
    """Each queue table's dead rows, once this connection's statistics have reached the server
    (they are sent when it goes idle, at most once a second unless forced)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.05)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [list(QUEUE_TABLES)],
        )
        return dict(cursor.fetchall())


def judged(project, import_rows, members) -> int:
    """Leases taken and judged through the queue, as annotators do: every one updates its
    comparison twice and its assignment once. Returns how many were judged."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(4)))
    done = 0
    for member in members:
        while (lease := assignment_next(project=project, annotator=member)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=member, choice="left")
            done += 1
    return done


def test_the_beat_schedules_the_upkeep_with_a_registered_task():
    entry = django_settings.CELERY_BEAT_SCHEDULE["vacuum-queue"]
    assert entry["task"] == "apps.judging.tasks.queue_vacuum_task"
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == float(django_settings.QUEUE_VACUUM_SECONDS) > 0


@pytest.mark.django_db
def test_inside_a_transaction_it_refuses_on_postgresql_and_elsewhere_has_nothing_to_do():
    # A test runs in a transaction, as a caller's atomic block would.
    if ON_POSTGRES:
        with pytest.raises(VacuumInTransaction, match="inside a transaction"):
            queue_tables_vacuum()
    else:
        assert queue_tables_vacuum() == []
        out = StringIO()
        call_command("vacuum_queue", stdout=out)
        assert "Nothing to do" in out.getvalue()


@pytest.mark.django_db
def test_a_negative_threshold_is_refused():
    with pytest.raises(CommandError, match="--min-dead must be 0 or more"):
        call_command("vacuum_queue", "--min-dead", "-1")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_judging_leaves_dead_rows_that_the_upkeep_removes_above_its_threshold(
    project, import_rows, annotators, settings
):
    project.overlap = 2
    project.save()
    done = judged(project, import_rows, annotators[:2])
    assert done == 24
    before = dead_rows()
    # Each judgment's lease and vote updated its comparison; each judgment closed a lease.
    assert before[COMPARISONS] >= done and before[ASSIGNMENTS] >= done

    # Below the threshold: reported, left alone.
    report = queue_tables_vacuum(min_dead=10**9)
    assert [(t.table, t.vacuumed) for t in report] == [(COMPARISONS, False), (ASSIGNMENTS, False)]
    assert [t.dead for t in report] == [before[COMPARISONS], before[ASSIGNMENTS]]

    # The beat job, at the configured threshold: both tables vacuumed.
    settings.QUEUE_VACUUM_MIN_DEAD = done
    assert queue_vacuum_task() == {
        COMPARISONS: before[COMPARISONS],
        ASSIGNMENTS: before[ASSIGNMENTS],
    }
    after = dead_rows()
    assert after[COMPARISONS] < before[COMPARISONS]
    assert after[ASSIGNMENTS] < before[ASSIGNMENTS]
    # Nothing judged was touched: every vote still counts.
    assert sum(Comparison.objects.values_list("judgment_count", flat=True)) == done


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_fresh_import_is_vacuumed_for_its_inserted_rows(project, import_rows):
    """No row is dead after an import, but its rows were never vacuumed: counted as autovacuum
    counts them, so that the import's pages are set all-visible once."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(4)))  # 12 comparisons
    dead_rows()  # the statistics flushed
    report = {t.table: t for t in queue_tables_vacuum(min_dead=12)}
    assert report[COMPARISONS].dead == 0 and report[COMPARISONS].inserted == 12
    assert report[COMPARISONS].vacuumed
    assert not report[ASSIGNMENTS].vacuumed  # no lease taken: nothing inserted
    # Once vacuumed, the same rows do not count again.
    dead_rows()
    again = {t.table: t for t in queue_tables_vacuum(min_dead=12)}
    assert again[COMPARISONS].inserted == 0 and not again[COMPARISONS].vacuumed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_command_says_what_it_did(project, import_rows, annotators):
    judged(project, import_rows, annotators[:1])
    out = StringIO()
    call_command("vacuum_queue", "--min-dead", "0", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{COMPARISONS}: ") and "vacuumed in" in lines[0]
    assert lines[1].startswith(f"{ASSIGNMENTS}: ") and "vacuumed in" in lines[1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_role_that_may_not_vacuum_is_reported_not_vacuumed(
    project, import_rows, annotators, caplog
):
    """VACUUM by a role that does not own the table only warns in PostgreSQL and does nothing:
    the upkeep asks first, says so in the log, and does not claim it."""
    judged(project, import_rows, annotators[:1])
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS annotate_upkeep_reader")
        cursor.execute("CREATE ROLE annotate_upkeep_reader NOLOGIN")
        cursor.execute("SET ROLE annotate_upkeep_reader")
    try:
        with caplog.at_level(logging.WARNING, logger="apps.judging.queue.upkeep"):
            report = queue_tables_vacuum(min_dead=0)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute("DROP ROLE annotate_upkeep_reader")
    assert [(t.table, t.vacuumed) for t in report] == [(COMPARISONS, False), (ASSIGNMENTS, False)]
    assert caplog.text.count("the database role does not own it") == 2
