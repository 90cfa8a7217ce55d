"""Every comparison carries its project's assignment policy (Comparison.policy), which decides
which of the queue's partial indexes it is in (queue_order.index_condition): the writers of new
rows, a change of the policy, and an import that a change races all keep it in step."""

import io
import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Count

from apps.batches.models import Batch, Comparison
from apps.batches.queue_order import INDEX_NAMES, index_condition
from apps.batches.services import _batch_store, _check_file, _prompts_to_store
from apps.judging.queue import policy as queue_policy
from apps.judging.queue.sql_pick import BREADTH_HEAD, EXACT, HEAD, comparison_pick
from apps.projects.models import AssignmentPolicy, Project
from tests.batches.test_import_stream import LARGE, large_file
from tests.conftest import prompt_line


def policies_of(project: Project) -> dict[str, int]:
    rows = Comparison.objects.filter(project=project).values("policy").annotate(n=Count("pk"))
    return {row["policy"]: row["n"] for row in rows}


def policy_set(project: Project, policy: str) -> None:
    project.policy = policy
    project.save(update_fields=["policy"])


def test_imported_comparisons_carry_the_projects_policy_and_follow_its_changes(
    project, import_rows
):
    policy_set(project, "depth_first")
    batch = import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(4)))
    assert policies_of(project) == {"depth_first": batch.comparison_count}
    policy_set(project, "random")
    assert policies_of(project) == {"random": batch.comparison_count}
    # A full save (the admin's) does the same; one that leaves the policy alone touches nothing.
    project.refresh_from_db()
    project.policy = "uncertain_first"
    project.save()
    assert policies_of(project) == {"uncertain_first": batch.comparison_count}
    project.save(update_fields=["name"])
    assert policies_of(project) == {"uncertain_first": batch.comparison_count}


def test_a_stale_copy_of_the_project_saved_again_takes_its_comparisons_with_it(
    project, import_rows
):
    """A save with an old policy (a form opened before another lead's change) sets the
    project's policy back, and its comparisons' with it."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(2)))
    stale = Project.objects.get(pk=project.pk)
    policy_set(project, "depth_first")
    stale.name = "Renamed"
    stale.save()
    assert Project.objects.get(pk=project.pk).policy == "breadth_first"
    assert set(policies_of(project)) == {"breadth_first"}


def test_only_breadth_first_s_index_holds_every_policy_s_rows():
    assert index_condition(AssignmentPolicy.BREADTH_FIRST).children == [
        ("complete", False),
        ("is_gold", False),
    ]
    for policy in set(AssignmentPolicy) - {AssignmentPolicy.BREADTH_FIRST}:
        assert ("policy", policy.value) in index_condition(policy).children, INDEX_NAMES[policy]


def test_a_comparison_without_a_valid_policy_is_refused(project, import_rows):
    import_rows(prompt_line("p-1", n=3))
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(project=project).update(policy="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(project=project).update(policy="longest_first")


def test_the_pick_reads_the_policy_s_own_index_once_the_rows_carry_it(
    project, import_rows, annotators
):
    """Rows labelled with another policy than the project's (as while a change races a pick)
    are still found, through breadth first's probes; once the change has updated them, the
    policy's own head finds them."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(3)))
    project.policy = "depth_first"  # the project's row and its comparisons disagree
    Project.objects.filter(pk=project.pk).update(policy="depth_first")
    picked = comparison_pick(project=project, annotator=annotators[0], rank_from=0)
    assert picked.comparison_id is not None and picked.probe == BREADTH_HEAD
    Comparison.objects.filter(project=project).update(policy="depth_first")
    picked = comparison_pick(project=project, annotator=annotators[0], rank_from=0)
    assert picked.comparison_id is not None and picked.probe == HEAD


def test_the_exact_probe_finds_rows_of_another_policy(
    project, import_rows, annotators, monkeypatch
):
    """With both bounded heads empty (a window of none), the exact probe finds the rows whatever
    policy they carry: "nothing left" is never said of open rows."""
    import_rows(prompt_line("p-1", n=3))
    Project.objects.filter(pk=project.pk).update(policy="uncertain_first")
    project.refresh_from_db()
    monkeypatch.setattr(queue_policy, "WINDOW", 0)
    picked = comparison_pick(project=project, annotator=annotators[0], rank_from=0)
    assert picked.comparison_id is not None and picked.probe == EXACT


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_policy_change_while_an_import_writes_reaches_the_imported_rows(project):
    """The change commits while the import is still writing: its update cannot see the rows
    not yet committed, so the import gives them the new policy at its end."""
    data = large_file()
    totals = _check_file(project, io.BytesIO(data))
    batch = Batch.objects.create(project=project)
    changed = []

    def change() -> None:
        try:
            policy_set(Project.objects.get(pk=project.pk), "random")
        finally:
            connection.close()

    def progress(done: int, total: int) -> None:
        if not changed:  # after the first chunk, from another connection, committed at once
            changer = threading.Thread(target=change)
            changer.start()
            changer.join(30)
            changed.append(done)

    with transaction.atomic():
        _batch_store(
            batch=batch,
            prompts=_prompts_to_store(io.BytesIO(data)),
            progress=progress,
            totals=totals,
        )
    assert changed and changed[0] < LARGE * 3
    assert Project.objects.get(pk=project.pk).policy == "random"
    assert policies_of(project) == {"random": LARGE * 3}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_policy_change_after_an_import_wrote_waits_for_its_commit(project):
    """Once the import has settled its rows' policy it holds the project's row: a change waits
    for the commit, and then updates the new rows with the rest."""
    data = large_file(count=50)
    totals = _check_file(project, io.BytesIO(data))
    batch = Batch.objects.create(project=project)
    started, done = threading.Event(), threading.Event()

    def change() -> None:
        try:
            started.set()
            policy_set(Project.objects.get(pk=project.pk), "depth_first")
            done.set()
        finally:
            connection.close()

    changer = threading.Thread(target=change)
    with transaction.atomic():
        _batch_store(batch=batch, prompts=_prompts_to_store(io.BytesIO(data)), totals=totals)
        changer.start()
        assert started.wait(10)
        assert not done.wait(1)  # waiting on the import's hold of the project's row
    changer.join(30)
    assert done.is_set()
    assert policies_of(project) == {"depth_first": 150}
