"""The queue: handing out comparisons (leases) and taking judgments.

Locking, in one order everywhere so that no two transactions wait on each other in a cycle:
an assignment row first, then its comparison row. The pick takes its comparison with
SKIP LOCKED and so never waits. Comparison.judgment_count + lease_count (the slots taken) is
changed only here, always under the comparison's row lock, and never exceeds project.overlap.
"""

import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from apps.batches.models import Batch, BatchStatus, Comparison
from apps.judging.models import Assignment, AssignmentStatus, Choice, Judgment
from apps.projects.models import Project

MAX_RATIONALE = 10_000
MAX_IDEMPOTENCY_KEY = 128
RECLAIM_LIMIT = 500


class JudgmentError(Exception):
    """The judgment is malformed (HTTP 400)."""


class JudgmentConflict(Exception):
    """The judgment cannot be taken in the queue's current state (HTTP 409)."""


class AssignmentNotFound(Exception):
    """No such assignment for this annotator (HTTP 404)."""


def _assignment_queryset() -> "QuerySet[Assignment]":
    return Assignment.objects.select_related("comparison__prompt", "left", "right", "project")


def assignment_next(
    *, project: Project, annotator: User, now: datetime | None = None
) -> Assignment | None:
    """The annotator's open lease in this project, or a new one; None when nothing is left.

    Queries: 1 when a lease is open; otherwise 6 (open lease, expired leases, pick, load,
    insert, count), plus 3 when expired leases are reclaimed on the way.
    """
    now = now or timezone.now()
    with transaction.atomic():
        existing = (
            _assignment_queryset()
            .filter(
                annotator=annotator,
                project=project,
                status=AssignmentStatus.OPEN,
                expires_at__gt=now,
            )
            .order_by("id")
            .first()
        )
        if existing is not None:
            return existing
        _leases_reclaim(project_id=project.pk, now=now, limit=RECLAIM_LIMIT)
        comparison_id = _comparison_pick(project=project, annotator=annotator)
        if comparison_id is None:
            return None
        comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
            pk=comparison_id
        )
        if secrets.randbelow(2):
            left, right = comparison.candidate_b, comparison.candidate_a
        else:
            left, right = comparison.candidate_a, comparison.candidate_b
        assignment = Assignment.objects.create(
            project=project,
            comparison=comparison,
            annotator=annotator,
            left=left,
            right=right,
            created_at=now,
            expires_at=now + timedelta(seconds=project.lease_seconds),
        )
        Comparison.objects.filter(pk=comparison.pk).update(lease_count=F("lease_count") + 1)
        comparison.lease_count += 1
        return assignment


def _comparison_pick(*, project: Project, annotator: User) -> int | None:
    """Locks the open comparison that this annotator should judge next: breadth first.

    Only the id is selected and locked. Joining the prompt and candidates here made PostgreSQL
    sort whole joined rows whenever its statistics were stale (seconds per pick at 100k).
    """
    active_batches = Batch.objects.filter(project=project, status=BatchStatus.ACTIVE).values("id")
    judged = Judgment.objects.filter(comparison=OuterRef("pk"), annotator=annotator)
    return (
        Comparison.objects.filter(project=project, batch_id__in=active_batches)
        .annotate(filled=F("judgment_count") + F("lease_count"))
        .filter(filled__lt=project.overlap)
        .exclude(Exists(judged))
        .order_by("filled", "id")
        .select_for_update(skip_locked=True)
        .values_list("id", flat=True)
        .first()
    )


def leases_reclaim_expired(
    *, project_id: int | None = None, now: datetime | None = None, limit: int = RECLAIM_LIMIT
) -> int:
    """Returns expired leases' slots to the pool. Safe to run from many processes at once."""
    with transaction.atomic():
        return _leases_reclaim(project_id=project_id, now=now or timezone.now(), limit=limit)


def _leases_reclaim(*, project_id: int | None, now: datetime, limit: int) -> int:
    """Reclaims up to `limit` expired leases; the caller holds the transaction.

    Queries: 1 when nothing has expired; 4 otherwise.
    """
    expired = Assignment.objects.filter(status=AssignmentStatus.OPEN, expires_at__lte=now)
    if project_id is not None:
        expired = expired.filter(project_id=project_id)
    rows = list(
        expired.order_by("expires_at")
        .select_for_update(skip_locked=True)
        .values_list("id", "comparison_id")[:limit]
    )
    if not rows:
        return 0
    Assignment.objects.filter(id__in=[row[0] for row in rows]).update(
        status=AssignmentStatus.EXPIRED, closed_at=now
    )
    per_comparison = Counter(comparison_id for _, comparison_id in rows)
    # Lock the comparisons in id order, so that two sweeps never deadlock.
    list(
        Comparison.objects.filter(id__in=per_comparison)
        .order_by("id")
        .select_for_update()
        .values_list("id", flat=True)
    )
    by_amount: dict[int, list[int]] = {}
    for comparison_id, amount in per_comparison.items():
        by_amount.setdefault(amount, []).append(comparison_id)
    for amount, ids in by_amount.items():
        Comparison.objects.filter(id__in=ids).update(lease_count=F("lease_count") - amount)
    return len(rows)


@dataclass(frozen=True)
class SubmitResult:
    judgment: Judgment
    created: bool  # False when this was a retry of an earlier, identical submission


def judgment_submit(
    *,
    assignment_id: int,
    annotator: User,
    choice: str,
    rationale: str = "",
    idempotency_key: str = "",
    duration_ms: int | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Stores the annotator's judgment of their assignment, exactly once.

    A retry with the same idempotency key returns the stored judgment (created=False). A lease
    that expired is still honoured while it holds its slot; once reclaimed, the judgment is
    taken only if the comparison still has a free slot and the annotator has not judged it.
    Queries: 4 (lock assignment, insert judgment, close assignment, count) on the usual path.
    """
    now = now or timezone.now()
    if not isinstance(rationale, str):
        raise JudgmentError("rationale must be a string.")
    if len(rationale) > MAX_RATIONALE:
        raise JudgmentError(f"rationale is longer than {MAX_RATIONALE} characters.")
    if "\x00" in rationale:
        raise JudgmentError("rationale contains a NUL character.")
    if not isinstance(idempotency_key, str) or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise JudgmentError(
            f"idempotency_key must be a string of at most {MAX_IDEMPOTENCY_KEY} characters."
        )
    if duration_ms is not None and (
        isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 0
    ):
        raise JudgmentError("duration_ms must be a whole number of milliseconds, 0 or more.")
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("project")
            .annotate(
                left_external_id=F("left__external_id"), right_external_id=F("right__external_id")
            )
            .filter(pk=assignment_id, annotator=annotator)
            .first()
        )
        if assignment is None:
            raise AssignmentNotFound("No such assignment.")
        _check_choice(assignment.project, choice)
        if assignment.status == AssignmentStatus.SUBMITTED:
            earlier = Judgment.objects.get(assignment=assignment)
            if idempotency_key and earlier.idempotency_key == idempotency_key:
                return SubmitResult(earlier, created=False)
            raise JudgmentConflict("This assignment has already been judged.")
        comparison_update: dict[str, object] = {"judgment_count": F("judgment_count") + 1}
        if assignment.status == AssignmentStatus.OPEN:
            comparison_update["lease_count"] = F("lease_count") - 1
        else:
            _check_late_submission(assignment)
        judgment = Judgment(
            comparison_id=assignment.comparison_id,
            annotator=annotator,
            assignment=assignment,
            choice=choice,
            left_id=assignment.left_id,
            right_id=assignment.right_id,
            chosen_id={Choice.LEFT: assignment.left_id, Choice.RIGHT: assignment.right_id}.get(
                Choice(choice)
            ),
            rationale=rationale.strip(),
            duration_ms=duration_ms,
            idempotency_key=idempotency_key,
            created_at=now,
        )
        # For the response: the winner's imported id, without loading the candidate again.
        judgment.chosen_external_id = {  # type: ignore[attr-defined]
            Choice.LEFT: assignment.left_external_id,
            Choice.RIGHT: assignment.right_external_id,
        }.get(Choice(choice))
        try:
            # No savepoint: on a conflict the whole transaction is rolled back anyway.
            judgment.save(force_insert=True)
        except IntegrityError:
            raise JudgmentConflict("You have already judged this comparison.") from None
        Assignment.objects.filter(pk=assignment.pk).update(
            status=AssignmentStatus.SUBMITTED, closed_at=now
        )
        Comparison.objects.filter(pk=assignment.comparison_id).update(**comparison_update)
        assignment.status = AssignmentStatus.SUBMITTED
        return SubmitResult(judgment, created=True)


def _check_choice(project: Project, choice: object) -> None:
    allowed = [Choice.LEFT.value, Choice.RIGHT.value]
    if project.allow_tie:
        allowed.append(Choice.TIE.value)
    if project.allow_both_bad:
        allowed.append(Choice.BOTH_BAD.value)
    if choice not in allowed:
        raise JudgmentError(f"choice must be one of {', '.join(allowed)}.")


def _check_late_submission(assignment: Assignment) -> None:
    """A reclaimed lease: take the judgment only into a free slot, never past the overlap."""
    comparison = Comparison.objects.select_for_update().filter(pk=assignment.comparison_id).first()
    if comparison is None:  # pragma: no cover - comparisons with assignments are not deleted
        raise JudgmentConflict("This comparison no longer exists.")
    if comparison.judgment_count + comparison.lease_count >= assignment.project.overlap:
        raise JudgmentConflict(
            "Your lease on this comparison expired and it has since received all the votes it "
            "needs. Your judgment was not stored; please take the next comparison."
        )
    if Judgment.objects.filter(
        comparison_id=assignment.comparison_id, annotator_id=assignment.annotator_id
    ).exists():
        raise JudgmentConflict("You have already judged this comparison.")
