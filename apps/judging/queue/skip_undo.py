"""Passing on an assignment, and taking back one's last judgment."""

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Abs
from django.utils import timezone

from apps.batches.models import Comparison
from apps.batches.queue_order import complete_value
from apps.judging.models import Assignment, AssignmentStatus, Choice, Judgment, Skip
from apps.judging.queue import sql_lease, statements
from apps.judging.queue.errors import (
    STANDING,
    AnnotatorBlocked,
    JudgmentConflict,
    JudgmentError,
    refusal_for,
    validate_text,
)
from apps.judging.queue.next import assignment_queryset, listwise_shown
from apps.judging.queue.policy import MAX_RATIONALE, UNDO_SECONDS
from apps.judging.queue.results import SkipResult, UndoResult
from apps.judging.queue.standing import lock_assignment, standing_problem, standing_refusal
from apps.projects.models import (
    Membership,
    Project,
    Scheme,
)


def assignment_skip(
    *,
    assignment_id: int,
    annotator: User,
    reason: str,
    note: str = "",
    now: datetime | None = None,
) -> SkipResult:
    """Passes on an assignment with a reason; the comparison is never offered to them again.

    `reason` is one of the project's skip reasons, or "other" with a note, or empty when the
    project has no skip reasons. Skipping again is
    harmless (created=False). Refused (AnnotatorBlocked, the lease released) when the annotator
    was removed from the project, deactivated or stopped by the gold rule since taking it.
    Queries: 6 (lock, insert, close, its slot back, count, member's count); 5 on a reclaimed
    lease, whose slot went back already.
    """
    now = now or timezone.now()
    note = validate_text(note, "note", MAX_RATIONALE).strip()
    reason = validate_text(reason, "reason", 200).strip()
    with transaction.atomic():
        locked = lock_assignment(assignment_id=assignment_id, annotator=annotator)
        refusal = standing_refusal(locked, now)
        if refusal is None:
            return _skip_locked(
                locked.assignment, annotator=annotator, reason=reason, note=note, now=now
            )
    raise refusal


def _skip_locked(
    assignment: Assignment, *, annotator: User, reason: str, note: str, now: datetime
) -> SkipResult:
    """The skip itself; the caller holds the assignment's lock."""
    allowed = [*assignment.project.skip_reasons, "other"]
    # A project without skip reasons lets its annotators skip without one (the project form
    # says so): the reason is then empty.
    if reason not in allowed and (reason or assignment.project.skip_reasons):
        raise JudgmentError(f"reason must be one of: {'; '.join(allowed)}.")
    if reason == "other" and not note:
        raise JudgmentError('A skip for reason "other" needs a note saying why.')
    if assignment.status == AssignmentStatus.SKIPPED:
        return SkipResult(Skip.objects.get(assignment=assignment), created=False)
    if assignment.status == AssignmentStatus.SUBMITTED:
        raise JudgmentConflict("This assignment has already been judged.")
    if assignment.status == AssignmentStatus.UNDONE:
        raise refusal_for("undone")
    comparison = assignment.comparison
    skip = Skip(
        comparison=comparison,
        annotator=annotator,
        assignment=assignment,
        reason=reason,
        note=note,
        created_at=now,
    )
    try:
        skip.save(force_insert=True)
    except IntegrityError:
        raise JudgmentConflict("You have already skipped this comparison.") from None
    # A reclaimed lease is skipped too (its slot went back with the reclaim).
    sql_lease.lease_close(
        assignment=assignment.pk,
        comparison=comparison.pk,
        status=AssignmentStatus.SKIPPED,
        now=now,
        was_open=assignment.status == AssignmentStatus.OPEN,
    )
    Comparison.objects.filter(pk=comparison.pk).update(skip_count=F("skip_count") + 1)
    Membership.objects.filter(project_id=assignment.project_id, user=annotator).update(
        skip_count=F("skip_count") + 1
    )
    assignment.status = AssignmentStatus.SKIPPED
    return SkipResult(skip, created=True)


def judgment_undo(*, project: Project, annotator: User, now: datetime | None = None) -> UndoResult:
    """Takes back the annotator's last judgment in the project and gives them its comparison
    again, on the same sides, so that they can answer anew.

    Allowed while the comparison is still open, and always within UNDO_SECONDS. The judgment is
    removed and every count it moved moves back (the comparison's votes, split and completion,
    the member's counts, gold accuracy included); the lease the annotator held meanwhile is
    released and its slot freed. Locks in the queue's order: assignments, then comparisons (in
    id order), then the member. Raises JudgmentConflict when there is nothing to take back, and
    AnnotatorBlocked when the annotator was removed from the project, deactivated or stopped by
    the gold rule: their judgments then stay as they are.
    """
    now = now or timezone.now()
    with transaction.atomic():
        standing = (
            Membership.objects.filter(project=project, user=annotator)
            .values_list("user__is_active", "gold_answered", "gold_correct")
            .first()
        )
        active, gold_answered, gold_correct = standing or (True, 0, 0)
        outcome, detail = standing_problem(
            project,
            active=active,
            member=standing is not None,
            gold_answered=gold_answered,
            gold_correct=gold_correct,
        )
        if outcome:  # nothing is taken back, and no lease given
            raise AnnotatorBlocked(STANDING[outcome].format(detail=detail))
        last = (
            Judgment.objects.filter(
                annotator=annotator, batch__project=project, invalidated_at__isnull=True
            )
            .order_by("-created_at", "-id")
            .values_list("id", "assignment_id")
            .first()
        )
        if last is None:
            raise JudgmentConflict("There is no judgment of yours to undo in this project.")
        judgment_id, assignment_id = last
        held = list(
            Assignment.objects.select_for_update()
            .filter(
                annotator=annotator,
                project=project,
                status=AssignmentStatus.OPEN,
            )
            .exclude(pk=assignment_id)
            .order_by("id")
        )
        judged_lease = Assignment.objects.select_for_update().filter(pk=assignment_id).first()
        judgment = Judgment.objects.select_related("comparison").filter(pk=judgment_id).first()
        if judgment is None:  # taken back by a concurrent request of theirs
            raise JudgmentConflict("That judgment was already undone.")
        comparison_ids = sorted({judgment.comparison_id, *(a.comparison_id for a in held)})
        comparisons = {
            c.pk: c for c in Comparison.objects.select_for_update().filter(pk__in=comparison_ids)
        }
        comparison = comparisons[judgment.comparison_id]
        if comparison.complete and now - judgment.created_at > timedelta(seconds=UNDO_SECONDS):
            raise JudgmentConflict(
                "That judgment can no longer be changed: its comparison has all its votes and "
                f"it was given more than {UNDO_SECONDS // 60} minutes ago."
            )
        for lease in held:
            sql_lease.lease_close(
                assignment=lease.pk,
                comparison=lease.comparison_id,
                status=AssignmentStatus.EXPIRED,
                now=now,
                was_open=True,
            )
        option = _option_of(judgment, comparison)
        judgment.delete()
        votes_a = F("votes_a") - int(option == "a")
        votes_b = F("votes_b") - int(option == "b")
        update: dict[str, Any] = {"judgment_count": F("judgment_count") - 1}
        if option is not None:
            update[f"votes_{option}"] = F(f"votes_{option}") - 1
            # With no vote left, the split is a fresh comparison's (batches.models: 1).
            update["split"] = Case(
                When(judgment_count=1, then=Value(1)), default=Abs(votes_a - votes_b)
            )
        # One vote fewer: still complete if the overlap was lowered below the votes since, or
        # if the margin still decides it; reopened otherwise (a comparison that stopped early
        # too).
        update["complete"] = complete_value(
            overlap=project.overlap, margin=project.stop_margin, votes_added=-1, option=option
        )
        Comparison.objects.filter(pk=comparison.pk).update(**update)
        # The judgment's slot is the new lease's.
        statements.run(sql_lease.SLOT_TAKE, {"comparison": comparison.pk})
        member: dict[str, Any] = {"judgment_count": F("judgment_count") - 1}
        if judgment.gold_correct is not None:
            member["gold_answered"] = F("gold_answered") - 1
            member["gold_correct"] = F("gold_correct") - int(judgment.gold_correct)
        Membership.objects.filter(project=project, user=annotator).update(**member)
        statements.run(
            sql_lease.LEASE_CLOSE,
            {"status": AssignmentStatus.UNDONE.value, "now": now, "assignment": assignment_id},
        )
        lease = Assignment.objects.create(
            project=project,
            comparison_id=comparison.pk,
            annotator=annotator,
            left_id=judgment.left_id,
            right_id=judgment.right_id,
            created_at=now,
            expires_at=now + timedelta(seconds=project.lease_seconds),
            guideline_version=project.guideline_version,
            shown_order=judged_lease.shown_order if judged_lease else None,
        )
    again = assignment_queryset().get(pk=lease.pk)
    if project.scheme == Scheme.LISTWISE:
        listwise_shown(again)
    return UndoResult(again, judgment, left_is_a=judgment.left_id == comparison.candidate_a_id)


def _option_of(judgment: Judgment, comparison: Comparison) -> str | None:
    """The judgment's vote as the comparison counts it: a, b, tie or both_bad (None: a
    ranking, which moves no pairwise vote)."""
    if judgment.choice == Choice.RANKING:
        return None
    if judgment.chosen_id is None:
        return judgment.choice
    return "a" if judgment.chosen_id == comparison.candidate_a_id else "b"
