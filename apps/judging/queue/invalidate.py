"""Marking an annotator's judgments invalid, and recounting their comparisons."""

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, Count, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.models import Comparison
from apps.batches.queue_order import complete_value
from apps.judging.models import Choice, Judgment
from apps.judging.queue.results import InvalidationResult
from apps.projects.models import (
    Project,
)


def judgments_invalidate(
    *,
    project: Project,
    annotator: User,
    actor: User,
    reason: str,
    since: datetime | None = None,
    judgment_ids: list[int] | None = None,
    now: datetime | None = None,
) -> InvalidationResult:
    """Marks the annotator's judgments in the project invalid (all of them, those given at or
    after `since`, or only `judgment_ids`): kept, with who did it, when and why, but no longer
    counted. Each comparison's counts are recomputed from its valid judgments, so its votes,
    split and completion move back, and a complete comparison reopens for someone else's vote.
    The annotator is not given those comparisons again (they stay judged by them). Exports and
    statistics leave invalid judgments out; the member's counts (caps, progress) keep them, as
    the work was done.

    Locks the comparisons in id order, the queue's order, so that a concurrent submit to one of
    them waits and then counts from the recomputed values. Already-invalid judgments are left as
    they were, so running it twice changes nothing.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("Say why the judgments are invalid: the reason is recorded.")
    now = now or timezone.now()
    with transaction.atomic():
        targets = Judgment.objects.filter(
            comparison__project=project, annotator=annotator, invalidated_at__isnull=True
        )
        if since is not None:
            targets = targets.filter(created_at__gte=since)
        if judgment_ids is not None:
            targets = targets.filter(pk__in=judgment_ids)
        comparison_ids = sorted(set(targets.values_list("comparison_id", flat=True)))
        if not comparison_ids:
            return InvalidationResult(0, 0, 0)
        locked = list(
            Comparison.objects.select_for_update()
            .filter(pk__in=comparison_ids)
            .order_by("id")
            .values_list("id", "complete")
        )
        marked = targets.filter(comparison_id__in=comparison_ids).update(
            invalidated_at=now, invalidated_by=actor, invalidation_reason=reason
        )
        _comparisons_recount(comparison_ids, overlap=project.overlap, margin=project.stop_margin)
        still = set(
            Comparison.objects.filter(pk__in=comparison_ids, complete=True).values_list(
                "id", flat=True
            )
        )
        reopened = sum(1 for pk, complete in locked if complete and pk not in still)
        audit_record(
            actor=actor,
            action=AuditAction.JUDGMENTS_INVALIDATED,
            project=project,
            target=annotator,
            details={
                "annotator": annotator.get_username(),
                "reason": reason,
                "since": since,
                "selected": len(judgment_ids) if judgment_ids is not None else None,
                "judgments": marked,
                "comparisons": len(comparison_ids),
                "reopened": reopened,
            },
        )
    return InvalidationResult(marked, len(comparison_ids), reopened)


def _comparisons_recount(comparison_ids: list[int], *, overlap: int, margin: int) -> None:
    """Sets each comparison's judgment count, votes per option, split and completion from its
    valid judgments (the caller holds the comparisons' row locks)."""
    valid = Judgment.objects.filter(
        comparison_id=OuterRef("pk"), invalidated_at__isnull=True, counts_toward_overlap=True
    )

    def count(queryset: QuerySet[Judgment]) -> Coalesce:
        counted = queryset.order_by().values("comparison_id").annotate(n=Count("id")).values("n")
        return Coalesce(Subquery(counted), Value(0))

    total = count(valid)
    votes_a = count(valid.filter(chosen_id=OuterRef("candidate_a_id")))
    votes_b = count(valid.filter(chosen_id=OuterRef("candidate_b_id")))
    Comparison.objects.filter(pk__in=comparison_ids).update(
        judgment_count=total,
        votes_a=votes_a,
        votes_b=votes_b,
        votes_tie=count(valid.filter(choice=Choice.TIE)),
        votes_both_bad=count(valid.filter(choice=Choice.BOTH_BAD)),
    )
    # From the new counts: an UPDATE's expressions read the row as it was before it.
    Comparison.objects.filter(pk__in=comparison_ids).update(
        # With no vote left, the split is a fresh comparison's (batches.models: 1).
        split=Case(When(judgment_count=0, then=Value(1)), default=Abs(F("votes_a") - F("votes_b"))),
        complete=complete_value(overlap=overlap, margin=margin),
    )
