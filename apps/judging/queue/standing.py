"""Whether an annotator may still act on a lease they took: removed from the project, account
deactivated, or stopped by the gold rule. A refused lease is closed and its slot freed."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import backend
from apps.judging.queue.errors import (
    AnnotatorBlocked,
    AssignmentNotFound,
    refusal_for,
    standing_error,
)
from apps.judging.queue.sql_lease import lease_close
from apps.judging.queue.sql_submit_steps import STANDING_RULES
from apps.projects.models import (
    Membership,
    Project,
    gold_stop_reason,
)
from apps.projects.rules import holds

_member = Membership.objects.filter(
    project_id=OuterRef("project_id"), user_id=OuterRef("annotator_id")
)


# A lease's annotator's standing: account active, membership, gold answers.
STANDING_COLUMNS: dict[str, Any] = {
    "annotator_active": F("annotator__is_active"),
    "member_id": Subquery(_member.values("id")[:1]),
    "member_gold_answered": Subquery(_member.values("gold_answered")[:1]),
    "member_gold_correct": Subquery(_member.values("gold_correct")[:1]),
}


# What the locking statement reads besides the lease, at no extra query: the sides' imported
# ids and the batch's cap (for the judgment), then the annotator's standing (standing_refusal).
_LOCK_COLUMNS: dict[str, Any] = {
    "left_external_id": F("left__external_id"),
    "right_external_id": F("right__external_id"),
    "batch_cap": F("comparison__batch__annotator_cap"),
    **STANDING_COLUMNS,
}


@dataclass(frozen=True)
class Locked:
    """A lease locked for a judgment or a skip, with what the locking statement read along."""

    assignment: Assignment
    left_external_id: str
    right_external_id: str
    batch_cap: int | None
    standing: tuple[Any, ...]  # STANDING_COLUMNS' values, in order


def lock_assignment(*, assignment_id: int, annotator: User) -> Locked:
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("project", "comparison")
        .filter(pk=assignment_id, annotator=annotator)
        .annotate(**_LOCK_COLUMNS)
        .first()
    )
    if assignment is None:
        raise refusal_for("not_found")
    read = {name: getattr(assignment, name) for name in _LOCK_COLUMNS}
    return Locked(
        assignment=assignment,
        left_external_id=read["left_external_id"],
        right_external_id=read["right_external_id"],
        batch_cap=read["batch_cap"],
        standing=tuple(read[name] for name in STANDING_COLUMNS),
    )


def standing_problem(
    project: Project, *, active: bool, member: bool, gold_answered: int, gold_correct: int
) -> tuple[str, str]:
    """(outcome, detail) when the annotator may not act in the project: removed from it, their
    account deactivated, or stopped by the gold rule; ("", "") when they may. The rules of
    sql_submit_steps.STANDING_RULES, which annotate_submit runs as STANDING_REFUSAL."""
    values = {
        "active": active,
        "member": member,
        "correct": gold_correct,
        "answered": gold_answered,
        "min_accuracy": project.gold_min_accuracy,
        "min_answers": project.gold_min_answers,
    }
    outcome = next((outcome for outcome, rule in STANDING_RULES if holds(rule, values)), "")
    if outcome != "stopped":
        return outcome, ""
    reason = gold_stop_reason(
        correct=gold_correct,
        answered=gold_answered,
        min_accuracy=project.gold_min_accuracy,
        min_answers=project.gold_min_answers,
    )
    return outcome, reason


def standing_refusal(locked: Locked, now: datetime) -> AnnotatorBlocked | None:
    """Refuses a judgment or skip on a lease taken before its annotator was removed from the
    project, deactivated or stopped by the gold rule: the lease is closed and its slot freed
    (the caller's transaction holds the assignment's lock, and this takes the comparison's,
    the queue's order), and the refusal is returned for the caller to raise once that has
    committed. None when the annotator may go on, or the lease is already answered."""
    assignment = locked.assignment
    if assignment.status not in (AssignmentStatus.OPEN, AssignmentStatus.EXPIRED):
        return None
    standing = locked.standing
    if backend.postgresql():
        # Read again, now that the lock is held: the locking statement saw the account and the
        # membership as they were before it waited (say, on a deactivation holding the row).
        # The ORM path runs here only for rankings; SQLite serializes writers.
        standing = tuple(
            Assignment.objects.filter(pk=assignment.pk)
            .annotate(**STANDING_COLUMNS)
            .values_list(*STANDING_COLUMNS)
            .get()
        )
    active, member_id, gold_answered, gold_correct = standing
    outcome, detail = standing_problem(
        assignment.project,
        active=active,
        member=member_id is not None,
        gold_answered=gold_answered or 0,
        gold_correct=gold_correct or 0,
    )
    if not outcome:
        return None
    if assignment.status == AssignmentStatus.OPEN:
        lease_close(
            assignment=assignment.pk,
            comparison=assignment.comparison_id,
            status=AssignmentStatus.EXPIRED,
            now=now,
            was_open=True,
        )
        assignment.status = AssignmentStatus.EXPIRED
    return standing_error(outcome, detail)


def assignment_release_refused(
    *, assignment_id: int, annotator: User, now: datetime | None = None
) -> str:
    """For a door that cannot reach the project any more (the judging page of a removed
    member): releases the annotator's lease if they may no longer act on it, as a judgment or
    skip would be refused, and returns the refusal's message; "" when the lease is not theirs,
    already answered, or they may go on."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            locked = lock_assignment(assignment_id=assignment_id, annotator=annotator)
        except AssignmentNotFound:
            return ""
        refusal = standing_refusal(locked, now)
    return str(refusal) if refusal else ""
