"""What the database itself enforces, and what no click can delete."""

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from apps.batches.models import Batch, Candidate, Comparison, Prompt
from apps.judging.models import Assignment, Judgment
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line


@pytest.fixture
def judged(project, annotators, batch) -> Judgment:
    lease = assignment_next(project=project, annotator=annotators[0])
    assert lease is not None
    return judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left").judgment


def test_one_judgment_per_comparison_and_annotator(judged):
    second = Assignment.objects.create(
        project=judged.comparison.project,
        comparison=judged.comparison,
        annotator=judged.annotator,
        left=judged.left,
        right=judged.right,
        created_at=timezone.now(),
        expires_at=timezone.now(),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(
            comparison=judged.comparison,
            annotator=judged.annotator,
            assignment=second,
            choice="tie",
            left=judged.left,
            right=judged.right,
            created_at=timezone.now(),
        )


def test_one_open_assignment_per_comparison_and_annotator(project, annotators, batch):
    lease = assignment_next(project=project, annotator=annotators[0])
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            project=project,
            comparison=lease.comparison,
            annotator=annotators[0],
            left=lease.left,
            right=lease.right,
            created_at=timezone.now(),
            expires_at=timezone.now(),
        )


def test_the_two_candidates_of_a_comparison_differ(batch):
    comparison = Comparison.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.create(
            project=comparison.project,
            batch=comparison.batch,
            prompt=comparison.prompt,
            candidate_a=comparison.candidate_a,
            candidate_b=comparison.candidate_a,
        )


def test_prompt_ids_are_unique_within_a_project(batch):
    with pytest.raises(IntegrityError), transaction.atomic():
        Prompt.objects.create(
            project=batch.project, batch=batch, external_id="p-1", content="again"
        )


def test_a_judgment_names_a_winner_exactly_when_a_side_was_chosen(judged):
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.filter(pk=judged.pk).update(choice="tie")


@pytest.mark.parametrize(
    "target",
    ["project", "batch", "prompt", "candidate", "comparison", "assignment", "annotator"],
)
def test_judgments_are_never_deleted_by_a_cascade(judged, target):
    obj = {
        "project": lambda: judged.comparison.project,
        "batch": lambda: judged.comparison.batch,
        "prompt": lambda: judged.comparison.prompt,
        "candidate": lambda: judged.left,
        "comparison": lambda: judged.comparison,
        "assignment": lambda: judged.assignment,
        "annotator": lambda: judged.annotator,
    }[target]()
    with pytest.raises(ProtectedError), transaction.atomic():
        obj.delete()
    assert Judgment.objects.filter(pk=judged.pk).exists()


def test_a_batch_without_judgments_can_be_deleted(import_rows):
    batch = import_rows(prompt_line("a"))
    batch.delete()
    assert not Batch.objects.exists()
    assert not Candidate.objects.exists()


def _fields(instance):
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_rows_of_plain_sql_build_the_instances_the_orm_would(project, annotators, batch):
    """membership_for and next build their instances from hand-written SQL: every field, JSON
    and floats included, must equal what the ORM loads."""
    from django.http import Http404

    from apps.projects.models import Membership
    from apps.projects.selectors import membership_for

    project.skip_reasons = ["unclear", 'ünïcode "quoted"']
    project.gold_rate = 0.25
    project.save()
    found = membership_for(user=annotators[0], slug=project.slug)
    orm = Membership.objects.select_related("project").get(project=project, user=annotators[0])
    assert _fields(found) == _fields(orm)
    assert _fields(found.project) == _fields(orm.project)
    with pytest.raises(Http404):
        membership_for(user=annotators[0], slug="no-such-project")

    lease = assignment_next(project=project, annotator=annotators[0])
    fresh = Assignment.objects.select_related("comparison__prompt", "left", "right").get(
        pk=lease.pk
    )
    assert _fields(lease) == _fields(fresh)
    assert lease.comparison.prompt.content == fresh.comparison.prompt.content
    assert (lease.left.external_id, lease.left.text) == (fresh.left.external_id, fresh.left.text)
    assert (lease.right.text, lease.comparison.judgment_count) == (fresh.right.text, 0)


def test_an_instance_from_a_row_names_unknown_fields():
    from annotate.rows import loaded

    with pytest.raises(TypeError, match="no_such_field"):
        loaded(Prompt, id=1, no_such_field=2)
