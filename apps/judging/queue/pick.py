"""The gold draw and the prefetched comparison in the ORM: the peek's gold item (on every
database), and next's gold item and prefetched comparison on databases other than PostgreSQL
(annotate_next, in sql_next, does those in PL/pgSQL). The pick itself, the ordinary comparison
next, is written once in sql_pick."""

import secrets

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Exists, F, OuterRef

from apps.batches.models import BatchStatus, Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip
from apps.judging.queue.results import Preference
from apps.judging.queue.sql_pick import ACTIVE_BATCHES
from apps.projects.models import Project


def draw() -> float:
    return secrets.randbelow(1_000_000) / 1_000_000


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


def gold_pick(*, project: Project, annotator: User) -> int | None:
    """A gold item this annotator has never been given, from a random point of their order,
    or None."""
    rank_from = secrets.randbelow(2**31)
    given = Assignment.objects.filter(comparison=OuterRef("pk"), annotator=annotator)
    with connection.cursor() as cursor:
        cursor.execute(ACTIVE_BATCHES, {"project": project.pk, "annotator": annotator.pk})
        batches = [row[0] for row in cursor.fetchall()]
    for start in (rank_from, 0):
        for batch in batches:
            found = (
                Comparison.objects.filter(batch_id=batch, is_gold=True, rank__gte=start)
                .exclude(Exists(given))
                .order_by("rank")
                .values_list("id", flat=True)
                .first()
            )
            if found is not None:
                return found
    return None
