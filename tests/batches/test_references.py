"""A comparison's project, batch, prompt and candidates carry no foreign-key constraint in the
database (an import's million rows paid for five checks each): the writers hold or create what
they refer to, deletes cascade through Django, and `reference_problems` (`manage.py
check_references`) checks it all as a set, including what the constraints never did."""

import io
import logging

import pytest
from django.core.management import CommandError, call_command
from django.db.models import ProtectedError

from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.selectors import REFERENCE_PROBLEMS, reference_problems
from apps.batches.services import batch_delete
from apps.batches.tasks import references_check_task
from apps.projects.models import Scheme
from apps.projects.services import project_create
from tests.batches.test_honeypots import rich_line
from tests.conftest import prompt_line


def check(*args: str) -> str:
    out = io.StringIO()
    call_command("check_references", *args, stdout=out)
    return out.getvalue()


def test_every_import_writes_references_that_hold(project, import_rows, alice):
    """Pairs, gold items with generated honeypots, and a listwise project's rankings: on
    PostgreSQL through COPY, on SQLite through bulk inserts."""
    project.gold_rate = 0.5
    project.honeypot_rate = 1.0
    project.save()
    batch = import_rows(*(rich_line(f"p{i}", n=3) for i in range(6)))
    assert Candidate.objects.exclude(degradation="").exists()  # honeypots were made
    ranked = project_create(slug="ranked", name="Ranked", created_by=alice, scheme=Scheme.LISTWISE)
    listwise = import_rows(*(prompt_line(f"q-{i}", n=4) for i in range(3)), target=ranked)
    assert Comparison.objects.filter(batch=listwise).count() == 3

    assert reference_problems() == {}
    assert reference_problems(batch_id=batch.pk) == {}
    assert check() == "Every comparison's references hold.\n"
    assert check("--project", "ranked") == "Every comparison's references hold.\n"


def test_each_broken_reference_is_found_and_named(project, import_rows, other):
    first = import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(2)))
    second = import_rows(prompt_line("p-9", n=3))
    rows = list(Comparison.objects.filter(batch=first).order_by("pk"))
    p0, p1 = Prompt.objects.filter(batch=first).order_by("pk")
    foreign = Candidate.objects.filter(prompt=p1).first()
    assert rows[0].prompt_id == p0.pk and foreign is not None
    # A candidate of another prompt, a candidate that does not exist, a batch the prompt is not
    # of, and a project that neither the prompt nor the batch is of.
    Comparison.objects.filter(pk=rows[0].pk).update(candidate_a_id=foreign.pk)
    Comparison.objects.filter(pk=rows[1].pk).update(candidate_b_id=10**12)
    Comparison.objects.filter(pk=rows[2].pk).update(batch_id=second.pk)
    Comparison.objects.filter(pk=rows[3].pk).update(project_id=other.pk)

    problems = reference_problems()
    assert problems == {
        "candidate_a": {"count": 1, "examples": [rows[0].pk]},
        "candidate_b": {"count": 1, "examples": [rows[1].pk]},
        "prompt": {"count": 2, "examples": [rows[2].pk, rows[3].pk]},
        "batch": {"count": 1, "examples": [rows[3].pk]},
    }
    # Scoped: the batch the moved row now names, and the other project, hold one each.
    assert reference_problems(batch_id=second.pk) == {
        "prompt": {"count": 1, "examples": [rows[2].pk]}
    }
    assert set(reference_problems(project_id=other.pk)) == {"prompt", "batch"}
    assert reference_problems(project_id=project.pk, examples=1)["prompt"] == {
        "count": 1,
        "examples": [rows[2].pk],
    }

    out = io.StringIO()
    with pytest.raises(CommandError, match="references do not hold"):
        call_command("check_references", stdout=out)
    printed = out.getvalue()
    assert f"1 comparison(s): {REFERENCE_PROBLEMS['candidate_a']} (ids {rows[0].pk})" in printed
    assert (
        f"2 comparison(s): {REFERENCE_PROBLEMS['prompt']} (ids {rows[2].pk}, {rows[3].pk})"
        in printed
    )
    # Nothing was changed by looking.
    assert Comparison.objects.get(pk=rows[1].pk).candidate_b_id == 10**12


def test_the_command_refuses_what_it_cannot_find(project):
    with pytest.raises(CommandError, match="No project with the slug 'nope'"):
        check("--project", "nope")
    with pytest.raises(CommandError, match="No batch with the id 999999"):
        check("--batch", "999999")


def test_deletes_cascade_through_django_and_leave_nothing_dangling(project, import_rows, bob):
    batch = import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(3)))
    kept = import_rows(prompt_line("k-1", n=3))
    prompt = Prompt.objects.filter(batch=batch).order_by("pk").first()
    assert prompt is not None
    prompt.delete()
    assert Comparison.objects.filter(batch=batch).count() == 6
    Candidate.objects.filter(prompt__batch=batch).order_by("pk").first().delete()
    assert Comparison.objects.filter(batch=batch).count() == 4

    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.DONE)
    batch.refresh_from_db()
    batch_delete(batch=batch, by=bob)
    assert not Comparison.objects.filter(batch_id=batch.pk).exists()
    assert not Prompt.objects.filter(batch_id=batch.pk).exists()
    assert Comparison.objects.filter(batch=kept).count() == 3
    # The project keeps PROTECT: with comparisons in it, it is not deleted.
    with pytest.raises(ProtectedError):
        project.delete()
    assert reference_problems() == {}


def test_the_daily_check_logs_each_fault_as_an_error(project, import_rows, caplog):
    batch = import_rows(prompt_line("p-1", n=3))
    assert references_check_task.apply().get() == {}
    row = Comparison.objects.filter(batch=batch).order_by("pk").first()
    assert row is not None
    Comparison.objects.filter(pk=row.pk).update(candidate_b_id=10**12)
    with caplog.at_level(logging.ERROR, logger="apps.batches.tasks"):
        assert references_check_task.apply().get() == {"candidate_b": 1}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"check_references: 1 comparison(s): {REFERENCE_PROBLEMS['candidate_b']} (ids {row.pk})"
    ]
