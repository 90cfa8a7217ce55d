"""The ORM pick (the path for databases other than PostgreSQL, where writers are serialized):
the ordinary comparison an annotator should judge next, a gold item, or the prefetched one."""

import secrets

from django.contrib.auth.models import User
from django.db.models import Exists, F, OuterRef

from apps.batches.models import Batch, BatchStatus, Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip
from apps.judging.queue.policy import ORM_ORDER
from apps.judging.queue.results import Preference
from apps.projects.models import (
    AssignmentPolicy,
    Project,
)


def preferred(*, project: Project, annotator: User, prefer: Preference) -> int | None:
    """The prefetched comparison, if the annotator may still take it (SQLite path): a gold item
    never given to them, or an ordinary comparison under its overlap."""
    gold = (
        Comparison.objects.filter(
            pk=prefer.comparison_id,
            project=project,
            is_gold=True,
            candidate_ids__isnull=True,  # a pair, as the page prefetches (and annotate_next)
            batch__status=BatchStatus.ACTIVE,
        )
        .exclude(Exists(Assignment.objects.filter(annotator=annotator, comparison=OuterRef("pk"))))
        .values_list("id", flat=True)
        .first()
    )
    if gold is not None:
        return gold
    mine = (
        Exists(Judgment.objects.filter(annotator=annotator, comparison=OuterRef("pk")))
        | Exists(Skip.objects.filter(annotator=annotator, comparison=OuterRef("pk")))
        | Exists(
            Assignment.objects.filter(
                annotator=annotator, comparison=OuterRef("pk"), status=AssignmentStatus.OPEN
            )
        )
    )
    return (
        Comparison.objects.filter(
            pk=prefer.comparison_id,
            project=project,
            complete=False,
            is_gold=False,
            candidate_ids__isnull=True,
            batch__status=BatchStatus.ACTIVE,
        )
        .annotate(filled=F("judgment_count") + F("lease_count"))
        .filter(filled__lt=project.overlap)
        .exclude(mine)
        .values_list("id", flat=True)
        .first()
    )


def draw() -> float:
    return secrets.randbelow(1_000_000) / 1_000_000


def comparison_pick(*, project: Project, annotator: User) -> int | None:
    """The ordinary comparison this annotator should judge next, by the project's policy: the
    SQLite path (writers are serialized there, so the rules in plain ORM suffice). PostgreSQL
    runs annotate_pick (sql_pick) instead. The random policy starts from a random rank and
    wraps around once.
    """
    random_policy = project.policy == AssignmentPolicy.RANDOM
    rank_from = secrets.randbelow(2**31) if random_policy else 0
    found = _pick_once(project=project, annotator=annotator, rank_from=rank_from)
    if found is None and rank_from:
        found = _pick_once(project=project, annotator=annotator, rank_from=0)
    return found


def _pick_once(*, project: Project, annotator: User, rank_from: int) -> int | None:
    judged = Judgment.objects.filter(annotator=annotator, comparison=OuterRef("pk"))
    skipped = Skip.objects.filter(annotator=annotator, comparison=OuterRef("pk"))
    leased = Assignment.objects.filter(
        annotator=annotator, comparison=OuterRef("pk"), status=AssignmentStatus.OPEN
    )
    for batch in _active_batches_for(project=project, annotator=annotator):
        candidates = (
            Comparison.objects.filter(batch=batch, complete=False, is_gold=False)
            .annotate(filled=F("judgment_count") + F("lease_count"))
            .filter(filled__lt=project.overlap, rank__gte=rank_from)
            .exclude(Exists(judged))
            .exclude(Exists(skipped))
            .exclude(Exists(leased))
            .order_by(*ORM_ORDER[AssignmentPolicy(project.policy)])
        )
        found = candidates.values_list("id", flat=True).first()
        if found is not None:
            return found
    return None


def _active_batches_for(*, project: Project, annotator: User) -> list[Batch]:
    batches = []
    for batch in Batch.objects.filter(project=project, status=BatchStatus.ACTIVE).order_by(
        "-priority", "id"
    ):
        if batch.annotator_cap is not None:
            done = Judgment.objects.filter(annotator=annotator, batch=batch).count()
            if done >= batch.annotator_cap:
                continue
        batches.append(batch)
    return batches


def gold_pick(*, project: Project, annotator: User) -> int | None:
    """A gold item this annotator has never been given, or None."""
    rank_from = secrets.randbelow(2**31)
    given = Assignment.objects.filter(comparison=OuterRef("pk"), annotator=annotator)
    for start in (rank_from, 0):
        found = None
        for batch in _active_batches_for(project=project, annotator=annotator):
            found = (
                Comparison.objects.filter(batch=batch, is_gold=True, rank__gte=start)
                .exclude(Exists(given))
                .order_by("rank")
                .values_list("id", flat=True)
                .first()
            )
            if found is not None:
                break
        if found is not None:
            return found
    return None
