"""The queue: handing out comparisons (leases) and taking judgments.

Locking, in one order everywhere so that no two transactions wait on each other in a cycle:
an assignment row first, then its comparison row. The pick takes its comparison with
SKIP LOCKED and so never waits. Comparison.judgment_count + lease_count (the slots taken) is
changed only here, always under the comparison's row lock, and never exceeds project.overlap.
"""

import json
import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from annotate.errors import BadRequest, Conflict, Forbidden, NotFound
from annotate.rows import converted, loaded
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt, random_rank
from apps.judging import answers, queue_sql
from apps.judging.answers import Answer
from apps.judging.models import Assignment, AssignmentStatus, Choice, Judgment, Skip
from apps.judging.selectors import membership_for_assignment
from apps.projects.models import (
    AssignmentPolicy,
    Membership,
    Project,
    Scheme,
    gold_stop_reason,
)

MAX_RATIONALE = answers.MAX_RATIONALE
MAX_IDEMPOTENCY_KEY = 128
MAX_DURATION_MS = 2**31 - 1
RECLAIM_LIMIT = queue_sql.RECLAIM_LIMIT

logger = logging.getLogger(__name__)


class JudgmentError(BadRequest):
    """The judgment is malformed (HTTP 400)."""


class JudgmentConflict(Conflict):
    """The judgment cannot be taken in the queue's current state (HTTP 409)."""


class IdempotencyConflict(JudgmentConflict):
    """The idempotency key was used before with another answer (HTTP 409): `judgment` is the
    one stored under it, which stands."""

    def __init__(self, judgment: "Judgment") -> None:
        super().__init__(
            "This idempotency key was already used with a different answer; the judgment "
            "stored under it stands. Send a new key for a new answer."
        )
        self.judgment = judgment


class AssignmentNotFound(NotFound):
    """No such assignment for this annotator (HTTP 404)."""


class AnnotatorBlocked(Forbidden):
    """The annotator may receive no more work in this project (HTTP 403); says why."""


def _assignment_queryset() -> "QuerySet[Assignment]":
    return Assignment.objects.select_related("comparison__prompt", "left", "right", "project")


def assignment_next(
    *,
    project: Project,
    annotator: User,
    membership: Membership | None = None,
    now: datetime | None = None,
    prefer: "Preference | None" = None,
) -> Assignment | None:
    """The annotator's open lease in this project, or a new one; None when nothing is left.

    `prefer` names the comparison the page prefetched (comparison_peek) and the sides it showed
    it on: it is leased, on those sides, if the annotator may still take it; otherwise the
    queue picks as usual (others may have filled it meanwhile).

    Raises AnnotatorBlocked when a cap or the gold accuracy rule stops this annotator.
    Queries: 2 when a lease is open; otherwise 6 (open lease, expired leases, pick, load,
    insert, count), plus 1 for a gold draw, plus 3 when expired leases are reclaimed, plus 1
    when `membership` is not given.
    """
    now = now or timezone.now()
    try:
        lease = _assignment_next_once(
            project=project, annotator=annotator, membership=membership, now=now, prefer=prefer
        )
    except IntegrityError:
        # Two requests of the same annotator at once (a double click) can both choose the same
        # comparison; the database keeps one open lease each, and the loser takes the winner's.
        lease = _assignment_next_once(
            project=project, annotator=annotator, membership=membership, now=now, prefer=prefer
        )
    if lease is not None and project.scheme == Scheme.LISTWISE:
        _listwise_shown(lease)
    return lease


def _listwise_shown(lease: Assignment) -> None:
    """Gives a new listwise lease its order (every candidate, shuffled, recorded as shown) and
    attaches the candidates in that order as `lease.shown`. 1 query, 2 for a new lease."""
    order = lease.shown_order
    if order is None:
        ids = list(
            Comparison.objects.values_list("candidate_ids", flat=True).get(pk=lease.comparison_id)
            or [lease.left_id, lease.right_id]
        )
        order = [ids.pop(secrets.randbelow(len(ids))) for _ in range(len(ids))]
        Assignment.objects.filter(pk=lease.pk).update(
            shown_order=order, left_id=order[0], right_id=order[1]
        )
        lease.shown_order, lease.left_id, lease.right_id = order, order[0], order[1]
    by_id = Candidate.objects.only("id", "external_id", "text", "model").in_bulk(order)
    lease.shown = [by_id[pk] for pk in order]  # type: ignore[attr-defined]
    lease.left, lease.right = lease.shown[0], lease.shown[1]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Preference:
    """A prefetched comparison, and whether it was shown with candidate B on the left."""

    comparison_id: int
    swap: bool

    def __str__(self) -> str:
        return f"{self.comparison_id}:{int(self.swap)}"

    @classmethod
    def parse(cls, value: str) -> "Preference | None":
        """From the page's `prefer` field; None for anything else (it is only a hint)."""
        comparison, _, swap = value.partition(":")
        if not comparison.isdigit() or swap not in ("0", "1") or len(comparison) > 18:
            return None
        return cls(int(comparison), swap == "1")


def _assignment_next_once(
    *,
    project: Project,
    annotator: User,
    membership: Membership | None,
    now: datetime,
    prefer: Preference | None = None,
) -> Assignment | None:
    if connection.vendor == "postgresql":
        return _assignment_next_postgresql(
            project=project, annotator=annotator, membership=membership, now=now, prefer=prefer
        )
    with transaction.atomic():
        # The id alone: most requests find no open lease, and a six-table join costs more to
        # plan than to run.
        existing_id = (
            Assignment.objects.filter(
                annotator=annotator,
                project=project,
                status=AssignmentStatus.OPEN,
                expires_at__gt=now,
            )
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
        if existing_id is not None:
            return _assignment_queryset().get(pk=existing_id)
        if reason := _blocked_reason(project=project, annotator=annotator, membership=membership):
            raise AnnotatorBlocked(reason)
        _leases_reclaim(project_id=project.pk, now=now, limit=RECLAIM_LIMIT)
        gold = prefer is None and project.gold_rate > 0 and _draw() < project.gold_rate
        comparison_id = _gold_pick(project=project, annotator=annotator) if gold else None
        is_gold = comparison_id is not None
        if comparison_id is None and prefer is not None:
            comparison_id = _preferred(project=project, annotator=annotator, prefer=prefer)
            is_gold = comparison_id is not None and (
                Comparison.objects.filter(pk=comparison_id, is_gold=True).exists()
            )
        if comparison_id is None:
            comparison_id = _comparison_pick(project=project, annotator=annotator)
        if comparison_id is None:
            return None
        comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
            pk=comparison_id
        )
        swap = (
            prefer.swap
            if prefer and prefer.comparison_id == comparison.pk
            else secrets.randbelow(2)
        )
        if swap:
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
            guideline_version=project.guideline_version,
        )
        if not is_gold:  # gold items have no overlap: their leases take no slot
            Comparison.objects.filter(pk=comparison.pk).update(lease_count=F("lease_count") + 1)
            comparison.lease_count += 1
        return assignment


def _blocked_reason(*, project: Project, annotator: User, membership: Membership | None) -> str:
    """Why the annotator may get no new work here ("" when they may): 1 query without
    `membership`, none with it."""
    if membership is None:
        membership = Membership.objects.filter(project=project, user=annotator).first()
    if membership is None or not (reason := membership.blocked_reason(project)):
        return ""
    return f"No more work for you in this project: you {reason}."


def _assignment_next_postgresql(
    *,
    project: Project,
    annotator: User,
    membership: Membership | None,
    now: datetime,
    prefer: Preference | None = None,
) -> Assignment | None:
    """annotate_next (queue_sql) does the whole of it in one statement; then the lease is loaded
    with what it shows. The blocked rule is decided here, from the membership's counters, and
    applied there only when no lease is open."""
    reason = _blocked_reason(project=project, annotator=annotator, membership=membership)
    random_policy = project.policy == AssignmentPolicy.RANDOM
    row = _call(
        "SELECT * FROM annotate_next(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            project.pk,
            annotator.pk,
            project.policy,
            project.overlap,
            project.lease_seconds,
            now,
            bool(reason),
            # With a prefetched comparison, the prefetch drew gold or not (comparison_peek).
            prefer is None and project.gold_rate > 0 and _draw() < project.gold_rate,
            secrets.randbelow(2**31) if random_policy else 0,
            secrets.randbelow(2**31),
            prefer.swap if prefer else bool(secrets.randbelow(2)),
            queue_sql.WINDOW,
            project.guideline_version,
            prefer.comparison_id if prefer else None,
        ],
    )
    (
        outcome,
        assignment_id,
        comparison_id,
        left_id,
        right_id,
        created_at,
        expires_at,
        prompt_id,
        prompt_external_id,
        prompt_content,
        left_external_id,
        left_text,
        right_external_id,
        right_text,
    ) = row
    if outcome == "blocked":
        raise AnnotatorBlocked(reason)
    if outcome == "none":
        return None
    # The lease and what it shows, as the function returned them: the fields the page and the
    # API read are loaded, any other is fetched if asked for (Django's deferred fields).
    prompt = loaded(
        Prompt,
        id=prompt_id,
        external_id=prompt_external_id,
        content=converted(Prompt._meta.get_field("content"), prompt_content),
    )
    comparison = loaded(Comparison, id=comparison_id, prompt_id=prompt_id)
    comparison.prompt = prompt
    assignment = loaded(
        Assignment,
        id=assignment_id,
        project_id=project.pk,
        comparison_id=comparison_id,
        annotator_id=annotator.pk,
        left_id=left_id,
        right_id=right_id,
        status=AssignmentStatus.OPEN,
        created_at=created_at,
        expires_at=expires_at,
        closed_at=None,
    )
    assignment.project = project
    assignment.comparison = comparison
    assignment.annotator = annotator
    assignment.left = loaded(Candidate, id=left_id, external_id=left_external_id, text=left_text)
    assignment.right = loaded(
        Candidate, id=right_id, external_id=right_external_id, text=right_text
    )
    return assignment


def _call(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """Runs one statement that calls a queue function and returns its row.

    Outside a transaction the statement is its own (autocommit): one round trip, no BEGIN or
    COMMIT. Inside one (a test, a caller's atomic block) it runs under a savepoint, so that an
    error rolls back this call and leaves the caller's transaction usable.
    """
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _preferred(*, project: Project, annotator: User, prefer: Preference) -> int | None:
    """The prefetched comparison, if the annotator may still take it (SQLite path): a gold item
    never given to them, or an ordinary comparison under its overlap."""
    gold = (
        Comparison.objects.filter(
            pk=prefer.comparison_id,
            project=project,
            is_gold=True,
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


def comparison_peek(*, project: Project, annotator: User) -> Assignment | None:
    """What the annotator would most likely be given next, to prefetch: an unsaved lease (no
    id) of the comparison the queue's pick chooses now, on random sides. Nothing is taken or
    kept locked (the pick runs in a transaction rolled back). None when the pick finds nothing,
    and for listwise projects."""
    if project.scheme == Scheme.LISTWISE:
        return None
    # The gold draw happens here, for the comparison after this one: the judgment that names
    # it draws nothing again, so the gold rate holds and the page never swaps a gold item in
    # after the prefetched one (which would give gold items away).
    if project.gold_rate > 0 and _draw() < project.gold_rate:
        gold_id = _gold_pick(project=project, annotator=annotator)
        if gold_id is not None:
            return _peek_of(project, gold_id)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # already in the transaction rolled back below
                cursor.execute(
                    "SELECT o_id FROM annotate_pick(%s, %s, %s, %s, %s, %s)",
                    [
                        project.pk,
                        annotator.pk,
                        project.policy,
                        project.overlap,
                        0,
                        queue_sql.WINDOW,
                    ],
                )
                comparison_id = cursor.fetchone()[0]
        else:
            comparison_id = _comparison_pick(project=project, annotator=annotator)
        transaction.set_rollback(True)
    if comparison_id is None:
        return None
    return _peek_of(project, comparison_id)


def _peek_of(project: Project, comparison_id: int) -> Assignment:
    comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
        pk=comparison_id
    )
    swap = bool(secrets.randbelow(2))
    left, right = comparison.candidate_a, comparison.candidate_b
    if swap:
        left, right = right, left
    peek = Assignment(project=project, comparison=comparison, left=left, right=right)
    peek.preference = Preference(comparison.pk, swap)  # type: ignore[attr-defined]
    return peek


def _draw() -> float:
    return secrets.randbelow(1_000_000) / 1_000_000


def _comparison_pick(*, project: Project, annotator: User) -> int | None:
    """The ordinary comparison this annotator should judge next, by the project's policy: the
    SQLite path (writers are serialized there, so the rules in plain ORM suffice). PostgreSQL
    runs annotate_pick (queue_sql) instead. The random policy starts from a random rank and
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
            .order_by(*_ORM_ORDER[AssignmentPolicy(project.policy)])
        )
        found = candidates.values_list("id", flat=True).first()
        if found is not None:
            return found
    return None


_ORM_ORDER = {
    AssignmentPolicy.BREADTH_FIRST: ["filled", "rank"],
    AssignmentPolicy.DEPTH_FIRST: ["-filled", "rank"],
    AssignmentPolicy.UNCERTAIN_FIRST: ["split", "filled", "rank"],
    AssignmentPolicy.RANDOM: ["rank"],
}


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


def _gold_pick(*, project: Project, annotator: User) -> int | None:
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


def leases_reclaim_expired(
    *, project_id: int | None = None, now: datetime | None = None, limit: int = RECLAIM_LIMIT
) -> int:
    """Returns expired leases' slots to the pool. Safe to run from many processes at once."""
    with transaction.atomic():
        return _leases_reclaim(project_id=project_id, now=now or timezone.now(), limit=limit)


def _leases_reclaim(*, project_id: int | None, now: datetime, limit: int) -> int:
    """Reclaims up to `limit` expired leases; the caller holds the transaction.

    Queries: on PostgreSQL 1 (annotate_reclaim, queue_sql); elsewhere 1 when nothing has
    expired, 4 otherwise.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT annotate_reclaim(%s, %s, %s)", [project_id, now, limit])
            return int(cursor.fetchone()[0])
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
    # Lock the comparisons in id order, so that two sweeps never deadlock. Gold leases took no
    # slot, so only ordinary comparisons get one back.
    gold = dict(
        Comparison.objects.filter(id__in={comparison_id for _, comparison_id in rows})
        .order_by("id")
        .select_for_update()
        .values_list("id", "is_gold")
    )
    per_comparison = Counter(comparison_id for _, comparison_id in rows if not gold[comparison_id])
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


def _validate_text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise JudgmentError(f"{name} must be a string.")
    if len(value) > limit:
        raise JudgmentError(f"{name} is longer than {limit} characters.")
    if "\x00" in value:
        raise JudgmentError(f"{name} contains a NUL character.")
    return value


_member = Membership.objects.filter(
    project_id=OuterRef("project_id"), user_id=OuterRef("annotator_id")
)


# A lease's annotator's standing: account active, membership, gold answers.
_STANDING_COLUMNS: dict[str, Any] = {
    "annotator_active": F("annotator__is_active"),
    "member_id": Subquery(_member.values("id")[:1]),
    "member_gold_answered": Subquery(_member.values("gold_answered")[:1]),
    "member_gold_correct": Subquery(_member.values("gold_correct")[:1]),
}


def _lock_assignment(*, assignment_id: int, annotator: User) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("project", "comparison")
        .annotate(
            left_external_id=F("left__external_id"),
            right_external_id=F("right__external_id"),
            batch_cap=F("comparison__batch__annotator_cap"),
        )
        .filter(pk=assignment_id, annotator=annotator)
        # The annotator's standing, read with the lock at no extra query (_standing_refusal).
        .annotate(**_STANDING_COLUMNS)
        .first()
    )
    if assignment is None:
        raise _refusal("not_found")
    return assignment


_REFUSALS: dict[str, tuple[type[Exception], str]] = {
    "not_found": (AssignmentNotFound, "No such assignment."),
    "judged": (JudgmentConflict, "This assignment has already been judged."),
    "skipped": (JudgmentConflict, "This assignment was skipped."),
    "undone": (
        JudgmentConflict,
        "This judgment was undone; its comparison was given back to you to judge again.",
    ),
    "late_full": (
        JudgmentConflict,
        "Your lease on this comparison expired and it has since received all the votes it "
        "needs. Your judgment was not stored; please take the next comparison.",
    ),
    "already_judged": (JudgmentConflict, "You have already judged this comparison."),
}


# Why an annotator may no longer act on a lease they took (annotate_submit names them alike).
_STANDING = {
    "not_member": "You are no longer a member of this project.",
    "inactive": "Your account has been deactivated.",
    "stopped": "No more work for you in this project: your {detail}.",
}
_NOTHING_STORED = " Nothing was stored, and the comparison goes back to the pool."


def _standing_error(outcome: str, detail: str = "") -> AnnotatorBlocked:
    return AnnotatorBlocked(_STANDING[outcome].format(detail=detail) + _NOTHING_STORED)


def _standing_problem(
    project: Project, *, active: bool, member: bool, gold_answered: int, gold_correct: int
) -> tuple[str, str]:
    """(outcome, detail) when the annotator may not act in the project: removed from it, their
    account deactivated, or stopped by the gold rule; ("", "") when they may."""
    if not active:
        return "inactive", ""
    if not member:
        return "not_member", ""
    reason = gold_stop_reason(
        correct=gold_correct,
        answered=gold_answered,
        min_accuracy=project.gold_min_accuracy,
        min_answers=project.gold_min_answers,
    )
    return ("stopped", reason) if reason else ("", "")


def _standing_refusal(assignment: Assignment, now: datetime) -> AnnotatorBlocked | None:
    """Refuses a judgment or skip on a lease taken before its annotator was removed from the
    project, deactivated or stopped by the gold rule: the lease is closed and its slot freed
    (the caller's transaction holds the assignment's lock, and this takes the comparison's,
    the queue's order), and the refusal is returned for the caller to raise once that has
    committed. None when the annotator may go on, or the lease is already answered."""
    if assignment.status not in (AssignmentStatus.OPEN, AssignmentStatus.EXPIRED):
        return None
    standing = [getattr(assignment, name) for name in _STANDING_COLUMNS]
    if connection.vendor == "postgresql":
        # Read again, now that the lock is held: the locking statement saw the account and the
        # membership as they were before it waited (say, on a deactivation holding the row).
        # The ORM path runs here only for rankings; SQLite serializes writers.
        standing = list(
            Assignment.objects.filter(pk=assignment.pk)
            .annotate(**_STANDING_COLUMNS)
            .values_list(*_STANDING_COLUMNS)
            .get()
        )
    active, member_id, gold_answered, gold_correct = standing
    outcome, detail = _standing_problem(
        assignment.project,
        active=active,
        member=member_id is not None,
        gold_answered=gold_answered or 0,
        gold_correct=gold_correct or 0,
    )
    if not outcome:
        return None
    if assignment.status == AssignmentStatus.OPEN:
        Assignment.objects.filter(pk=assignment.pk).update(
            status=AssignmentStatus.EXPIRED, closed_at=now
        )
        if not assignment.comparison.is_gold:
            Comparison.objects.filter(pk=assignment.comparison_id).update(
                lease_count=F("lease_count") - 1
            )
        assignment.status = AssignmentStatus.EXPIRED
    return _standing_error(outcome, detail)


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
            assignment = _lock_assignment(assignment_id=assignment_id, annotator=annotator)
        except AssignmentNotFound:
            return ""
        refusal = _standing_refusal(assignment, now)
    return str(refusal) if refusal else ""


def _ranking_ids(assignment: Assignment, groups: list[list[str]]) -> list[list[int]]:
    """The ranking's response ids as candidate ids, checked: each response shown, once; ties
    only where the project allows them."""
    shown = assignment.shown_order or [assignment.left_id, assignment.right_id]
    by_external = dict(Candidate.objects.filter(pk__in=shown).values_list("external_id", "id"))
    given = [external for group in groups for external in group]
    if sorted(given) != sorted(by_external):
        raise JudgmentError(answers.message("bad_ranking", ", ".join(sorted(by_external))))
    if not assignment.project.allow_tie and any(len(group) > 1 for group in groups):
        raise JudgmentError(answers.message("no_ties"))
    return [[by_external[external] for external in group] for group in groups]


def _cap_refusal(outcome: str, cap: int) -> JudgmentConflict:
    where = "this project" if outcome == "project_cap" else "this batch"
    return JudgmentConflict(
        f"You have reached the cap of {cap} judgments in {where}. This judgment was not stored, "
        "and the comparison goes back to the pool."
    )


def _cap_check(
    assignment: Assignment, comparison: Comparison, holds_slot: bool, now: datetime
) -> JudgmentConflict | None:
    """The caps, checked again as the judgment arrives (SQLite path; annotate_submit does it on
    PostgreSQL): an annotator with two leases taken at once must not pass a cap with both. A
    refused judgment closes its lease and frees its slot, and the refusal is returned for the
    caller to raise once its transaction has committed that."""
    project = assignment.project
    outcome, cap = "", 0
    if project.annotator_cap is not None:
        count = (
            Membership.objects.select_for_update()
            .filter(project=project, user_id=assignment.annotator_id)
            .values_list("judgment_count", flat=True)
            .first()
        )
        if count is not None and count >= project.annotator_cap:
            outcome, cap = "project_cap", project.annotator_cap
    batch_cap = assignment.batch_cap  # type: ignore[attr-defined]
    if not outcome and batch_cap is not None:
        judged = Judgment.objects.filter(
            annotator_id=assignment.annotator_id, batch_id=comparison.batch_id
        )
        if judged[:batch_cap].count() >= batch_cap:
            outcome, cap = "batch_cap", batch_cap
    if not outcome:
        return None
    if assignment.status == AssignmentStatus.OPEN:
        Assignment.objects.filter(pk=assignment.pk).update(
            status=AssignmentStatus.EXPIRED, closed_at=now
        )
        if holds_slot:
            Comparison.objects.filter(pk=comparison.pk).update(lease_count=F("lease_count") - 1)
    return _cap_refusal(outcome, cap)


def _refusal(outcome: str) -> Exception:
    """The error for a submission refused with `outcome` (as annotate_submit names them)."""
    error, message = _REFUSALS[outcome]
    return error(message)


def _judgment_submit_postgresql(
    *,
    assignment_id: int,
    annotator: User,
    answer: Answer,
    idempotency_key: str,
    duration_ms: int | None,
    now: datetime,
) -> SubmitResult:
    """annotate_submit (queue_sql) takes the judgment in one statement, with the same rules as
    the ORM path below it; the Judgment returned is built from what it reports, not reloaded."""
    criteria = {name: pick.as_json() for name, pick in answer.criteria.items()}
    (
        outcome,
        judgment_id,
        comparison_id,
        batch_id,
        left_id,
        right_id,
        chosen_id,
        chosen_external_id,
        gold_correct,
        detail,
        strength,
        stored_criteria,
        guideline_version,
        left_is_a,
    ) = _call(
        "SELECT * FROM annotate_submit(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            assignment_id,
            annotator.pk,
            answer.overall.choice,
            answer.overall.strength,
            json.dumps(criteria),
            json.dumps(answer.flags),
            answer.rationale,
            idempotency_key,
            duration_ms,
            now,
        ],
    )
    if outcome in answers.MESSAGES:
        raise JudgmentError(answers.message(outcome, detail or ""))
    if outcome in ("project_cap", "batch_cap"):
        raise _cap_refusal(outcome, int(detail))
    if outcome in _STANDING:
        raise _standing_error(outcome, _gold_detail(detail) if outcome == "stopped" else "")
    if outcome == "repeat":
        return _repeat(_judgment_for_response(judgment_id), answer)
    if outcome != "created":
        raise _refusal(outcome)
    judgment = Judgment(
        pk=judgment_id,
        comparison_id=comparison_id,
        batch_id=batch_id,
        annotator=annotator,
        assignment_id=assignment_id,
        choice=answer.overall.choice,
        left_id=left_id,
        right_id=right_id,
        chosen_id=chosen_id,
        strength=strength,
        criteria=converted(Judgment._meta.get_field("criteria"), stored_criteria),
        flags=answer.flags,
        guideline_version=guideline_version,
        rationale=answer.rationale,
        duration_ms=duration_ms,
        idempotency_key=idempotency_key,
        gold_correct=gold_correct,
        created_at=now,
    )
    judgment.chosen_external_id = chosen_external_id  # type: ignore[attr-defined]
    judgment.left_is_a = left_is_a  # type: ignore[attr-defined]
    judgment._state.adding = False
    return SubmitResult(judgment, created=True)


def _gold_detail(detail: str) -> str:
    """The gold rule's reason from annotate_submit's report: "correct answered minimum
    min_answers"."""
    correct, answered, minimum, min_answers = detail.split()
    return gold_stop_reason(
        correct=int(correct),
        answered=int(answered),
        min_accuracy=float(minimum),
        min_answers=int(min_answers),
    )


def _repeat(earlier: Judgment, answer: Answer) -> SubmitResult:
    """A submission with the idempotency key of the judgment stored: the same answer again is a
    retry (created=False); another answer is refused, the first one standing (as Stripe answers
    a key reused with other parameters)."""
    if not _same_answer(earlier, answer):
        raise IdempotencyConflict(earlier)
    return SubmitResult(earlier, created=False)


def _same_answer(judgment: Judgment, answer: Answer) -> bool:
    """Whether `answer` is the one stored in `judgment`: choice, strength, criteria, flags,
    rationale and ranking. duration_ms is a measurement, not the answer, and is not compared."""
    left_is_a = judgment.left_is_a  # type: ignore[attr-defined]
    overall = answers.oriented(answer.overall, left_is_a=left_is_a)
    criteria = {
        name: answers.oriented(pick, left_is_a=left_is_a) for name, pick in answer.criteria.items()
    }
    if (
        judgment.choice != answer.overall.choice
        or judgment.strength != overall["strength"]
        or judgment.criteria != criteria
        or sorted(judgment.flags) != sorted(answer.flags)
        or judgment.rationale != answer.rationale
    ):
        return False
    if judgment.ranking is None or answer.ranking is None:
        return judgment.ranking is None and answer.ranking is None
    ids = [pk for group in judgment.ranking for pk in group]
    external = dict(Candidate.objects.filter(pk__in=ids).values_list("id", "external_id"))
    stored = [sorted(external[pk] for pk in group) for group in judgment.ranking]
    return stored == [sorted(group) for group in answer.ranking]


def _judgment_for_response(judgment_id: int) -> Judgment:
    """A stored judgment with what its response shows (a retry's answer)."""
    return Judgment.objects.annotate(
        chosen_external_id=F("chosen__external_id"),
        left_is_a=Case(
            When(left_id=F("comparison__candidate_a_id"), then=Value(True)),
            default=Value(False),
        ),
    ).get(pk=judgment_id)


def judgment_submit(
    *,
    assignment_id: int,
    annotator: User,
    choice: str | None = None,
    strength: int | None = None,
    criteria: dict[str, Any] | None = None,
    flags: list[str] | None = None,
    rationale: str = "",
    ranking: list[Any] | None = None,
    idempotency_key: str = "",
    duration_ms: int | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Stores the annotator's judgment of their assignment, exactly once.

    The answer is on the screen's terms (answers.py): `choice`, or for graded projects
    `strength` (-3..3, below 0 the left response is better), per-criterion answers of the same
    kind, flags and a rationale, each checked against the project. A retry with the same
    idempotency key and the same answer returns the stored judgment (created=False); with
    another answer it raises IdempotencyConflict, which carries the stored judgment. A lease
    whose annotator was since removed from the project, deactivated or stopped by the gold rule
    is refused (AnnotatorBlocked) and released. A lease that expired is still
    honoured while it holds its slot; once reclaimed, the judgment is taken only if the
    comparison still has a free slot and the annotator has not judged it.
    Queries: on PostgreSQL 1 (annotate_submit); on SQLite 5 (lock assignment, insert judgment,
    close assignment, count, member's counts), 6 with a project cap.
    """
    now = now or timezone.now()
    try:
        answer = answers.answer_parse(
            choice=choice,
            strength=strength,
            criteria=criteria,
            flags=flags,
            rationale=rationale,
            ranking=ranking,
        )
    except answers.AnswerError as exc:
        raise JudgmentError(str(exc)) from None
    if not isinstance(idempotency_key, str) or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise JudgmentError(
            f"idempotency_key must be a string of at most {MAX_IDEMPOTENCY_KEY} characters."
        )
    _validate_text(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY)
    if duration_ms is not None and (
        isinstance(duration_ms, bool)
        or not isinstance(duration_ms, int)
        or not 0 <= duration_ms <= MAX_DURATION_MS
    ):
        raise JudgmentError(
            f"duration_ms must be a whole number of milliseconds from 0 to {MAX_DURATION_MS}."
        )
    # A ranking (listwise projects) takes the ORM path on PostgreSQL too: its rules need the
    # candidates' ids, and it is not the pairwise hot path annotate_submit is for.
    if connection.vendor == "postgresql" and answer.ranking is None:
        return _judgment_submit_postgresql(
            assignment_id=assignment_id,
            annotator=annotator,
            answer=answer,
            idempotency_key=idempotency_key,
            duration_ms=duration_ms,
            now=now,
        )
    with transaction.atomic():
        assignment = _lock_assignment(assignment_id=assignment_id, annotator=annotator)
        refusal: Exception | None = _standing_refusal(assignment, now)
        if refusal is None:
            if problem := answers.answer_problem(assignment.project, answer):
                raise JudgmentError(answers.message(*problem))
            ranking_ids = (
                None if answer.ranking is None else _ranking_ids(assignment, answer.ranking)
            )
            if assignment.status == AssignmentStatus.SUBMITTED:
                earlier = _judgment_for_response(Judgment.objects.get(assignment=assignment).pk)
                if idempotency_key and earlier.idempotency_key == idempotency_key:
                    return _repeat(earlier, answer)
                raise _refusal("judged")
            if assignment.status in (AssignmentStatus.SKIPPED, AssignmentStatus.UNDONE):
                raise _refusal(str(assignment.status))
            comparison = assignment.comparison
            holds_slot = assignment.status == AssignmentStatus.OPEN and not comparison.is_gold
            if assignment.status != AssignmentStatus.OPEN:
                _check_late_submission(assignment)
            refusal = _cap_check(assignment, comparison, holds_slot, now)
        if refusal is None:
            return _judgment_store(
                assignment=assignment,
                comparison=comparison,
                annotator=annotator,
                answer=answer,
                ranking_ids=ranking_ids,
                duration_ms=duration_ms,
                idempotency_key=idempotency_key,
                holds_slot=holds_slot,
                now=now,
            )
    raise refusal


def _judgment_store(
    *,
    assignment: Assignment,
    comparison: Comparison,
    annotator: User,
    answer: Answer,
    ranking_ids: list[list[int]] | None,
    duration_ms: int | None,
    idempotency_key: str,
    holds_slot: bool,
    now: datetime,
) -> SubmitResult:
    """Stores the vote and moves the counts (SQLite path); the caller holds the locks."""
    choice = answer.overall.choice
    left_is_a = assignment.left_id == comparison.candidate_a_id
    chosen_id = {Choice.LEFT: assignment.left_id, Choice.RIGHT: assignment.right_id}.get(
        Choice(choice)
    )
    option: str | None = (
        choice if chosen_id is None else ("a" if chosen_id == comparison.candidate_a_id else "b")
    )
    if choice == Choice.RANKING:
        option = None
    gold_correct = (option == comparison.gold_answer) if comparison.is_gold else None
    judgment = Judgment(
        comparison_id=comparison.pk,
        batch_id=comparison.batch_id,
        annotator=annotator,
        assignment=assignment,
        choice=choice,
        left_id=assignment.left_id,
        right_id=assignment.right_id,
        chosen_id=chosen_id,
        strength=answers.oriented(answer.overall, left_is_a=left_is_a)["strength"],
        criteria={
            name: answers.oriented(pick, left_is_a=left_is_a)
            for name, pick in answer.criteria.items()
        },
        flags=answer.flags,
        ranking=ranking_ids,
        guideline_version=assignment.guideline_version,
        rationale=answer.rationale,
        duration_ms=duration_ms,
        idempotency_key=idempotency_key,
        gold_correct=gold_correct,
        created_at=now,
    )
    judgment.left_is_a = left_is_a  # type: ignore[attr-defined]
    # For the response: the winner's imported id, without loading the candidate again.
    judgment.chosen_external_id = {  # type: ignore[attr-defined]
        Choice.LEFT: assignment.left_external_id,  # type: ignore[attr-defined]
        Choice.RIGHT: assignment.right_external_id,  # type: ignore[attr-defined]
    }.get(Choice(choice))
    try:
        # No savepoint: on a conflict the whole transaction is rolled back anyway.
        judgment.save(force_insert=True)
    except IntegrityError:
        raise _refusal("already_judged") from None
    Assignment.objects.filter(pk=assignment.pk).update(
        status=AssignmentStatus.SUBMITTED, closed_at=now
    )
    Comparison.objects.filter(pk=comparison.pk).update(
        **_counts_after_vote(assignment.project, option, holds_slot, comparison.is_gold)
    )
    member_counts: dict[str, Any] = {"judgment_count": F("judgment_count") + 1}
    if gold_correct is not None:
        member_counts["gold_answered"] = F("gold_answered") + 1
        member_counts["gold_correct"] = F("gold_correct") + int(gold_correct)
    Membership.objects.filter(project_id=assignment.project_id, user=annotator).update(
        **member_counts
    )
    assignment.status = AssignmentStatus.SUBMITTED
    return SubmitResult(judgment, created=True)


def _counts_after_vote(
    project: Project, option: str | None, holds_slot: bool, is_gold: bool
) -> dict[str, Any]:
    """The comparison's column updates for one more vote for `option` (a, b, tie, both_bad;
    None for a ranking, which moves no pairwise vote)."""
    votes_a = F("votes_a") + int(option == "a")
    votes_b = F("votes_b") + int(option == "b")
    update: dict[str, Any] = {
        "judgment_count": F("judgment_count") + 1,
        # A fresh rank at each new level. Levels are handed out in rank order, so without it
        # whoever worked first would own the head of the next level, and would have to scan
        # past all of it there: the cost would grow with their history.
        "rank": random_rank(),
    }
    if option is not None:
        update[f"votes_{option}"] = F(f"votes_{option}") + 1
        update["split"] = Abs(votes_a - votes_b)
    if holds_slot:
        update["lease_count"] = F("lease_count") - 1
    if not is_gold:
        update["complete"] = Case(
            When(judgment_count__gte=project.overlap - 1, then=Value(True)),
            default=Value(False),
        )
    return update


# Why a submit or skip that asked for the next assignment (`?next=1`) carries none.
NEXT_NONE_LEFT = "none_left"  # what next answers with 204
NEXT_BLOCKED = "blocked"  # what next answers with 403: a cap, the gold rule, removed
NEXT_UNAVAILABLE = "unavailable"  # taking the lease failed; the judgment or skip stands
NEXT_REASONS = (NEXT_NONE_LEFT, NEXT_BLOCKED, NEXT_UNAVAILABLE)
_NEXT_DETAILS = {
    NEXT_NONE_LEFT: "Nothing is left for you in this project.",
    NEXT_UNAVAILABLE: (
        "The next assignment could not be taken just now (what you sent is stored): ask for "
        "it with POST /api/v1/projects/<slug>/assignments/next/."
    ),
}
_NOT_A_MEMBER = "You are no longer a member of this project."


@dataclass(frozen=True)
class NextAfter:
    """The next assignment a submit or skip asked for: `assignment`, or None and why
    (`reason`, one of NEXT_REASONS, and `detail`, a sentence for a person)."""

    assignment: Assignment | None
    reason: str = ""
    detail: str = ""


def assignment_next_after(
    *, assignment_id: int, annotator: User, now: datetime | None = None
) -> NextAfter:
    """The annotator's next assignment in the project of `assignment_id`, exactly as
    assignment_next hands it out (their open lease, or a new one), for a submit or skip that
    asked for it in the same request.

    Called once the judgment or skip has committed, in transactions of its own: nothing here
    can take it back. So a failure to take the lease (the database refusing or going away) is
    reported as NEXT_UNAVAILABLE rather than raised, and the caller still answers that the
    judgment was stored. A retry of the submission (same idempotency key) comes here again and
    gets the open lease the first answer carried, if it is still unanswered: no second lease.
    Queries: the membership with its project, then assignment_next's.
    """
    try:
        membership = membership_for_assignment(user=annotator, assignment_id=assignment_id)
        if membership is None:  # removed since (a retry of an earlier judgment)
            return NextAfter(None, NEXT_BLOCKED, _NOT_A_MEMBER)
        lease = assignment_next(
            project=membership.project, annotator=annotator, membership=membership, now=now
        )
    except AnnotatorBlocked as exc:
        return NextAfter(None, NEXT_BLOCKED, str(exc))
    except DatabaseError:
        logger.warning(
            "next after assignment %s: could not take a lease", assignment_id, exc_info=True
        )
        return NextAfter(None, NEXT_UNAVAILABLE, _NEXT_DETAILS[NEXT_UNAVAILABLE])
    if lease is None:
        return NextAfter(None, NEXT_NONE_LEFT, _NEXT_DETAILS[NEXT_NONE_LEFT])
    return NextAfter(lease)


@dataclass(frozen=True)
class SkipResult:
    skip: Skip
    created: bool


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
    Queries: 5 (lock, insert, close, count, member's count).
    """
    now = now or timezone.now()
    note = _validate_text(note, "note", MAX_RATIONALE).strip()
    reason = _validate_text(reason, "reason", 200).strip()
    with transaction.atomic():
        assignment = _lock_assignment(assignment_id=assignment_id, annotator=annotator)
        refusal = _standing_refusal(assignment, now)
        if refusal is None:
            return _skip_locked(assignment, annotator=annotator, reason=reason, note=note, now=now)
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
        raise _refusal("undone")
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
    Assignment.objects.filter(pk=assignment.pk).update(
        status=AssignmentStatus.SKIPPED, closed_at=now
    )
    counts: dict[str, Any] = {"skip_count": F("skip_count") + 1}
    if assignment.status == AssignmentStatus.OPEN and not comparison.is_gold:
        counts["lease_count"] = F("lease_count") - 1
    Comparison.objects.filter(pk=comparison.pk).update(**counts)
    Membership.objects.filter(project_id=assignment.project_id, user=annotator).update(
        skip_count=F("skip_count") + 1
    )
    assignment.status = AssignmentStatus.SKIPPED
    return SkipResult(skip, created=True)


def _check_late_submission(assignment: Assignment) -> None:
    """A reclaimed lease: take the judgment only into a free slot, never past the overlap."""
    comparison = Comparison.objects.select_for_update().filter(pk=assignment.comparison_id).first()
    if comparison is None:  # pragma: no cover - comparisons with assignments are not deleted
        raise JudgmentConflict("This comparison no longer exists.")
    if (
        not comparison.is_gold
        and comparison.judgment_count + comparison.lease_count >= assignment.project.overlap
    ):
        raise _refusal("late_full")
    if Judgment.objects.filter(
        comparison_id=assignment.comparison_id, annotator_id=assignment.annotator_id
    ).exists():
        raise _refusal("already_judged")


# How long after a judgment its annotator may always take it back, even once its comparison
# has all its votes. While the comparison is still open, they may take it back at any time.
UNDO_SECONDS = 300


@dataclass(frozen=True)
class UndoResult:
    assignment: Assignment  # the annotator's lease on the comparison again, sides as before
    undone: Judgment  # what they had answered (no longer stored)


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
        outcome, detail = _standing_problem(
            project,
            active=active,
            member=standing is not None,
            gold_answered=gold_answered,
            gold_correct=gold_correct,
        )
        if outcome:  # nothing is taken back, and no lease given
            raise AnnotatorBlocked(_STANDING[outcome].format(detail=detail))
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
            Assignment.objects.filter(pk=lease.pk).update(
                status=AssignmentStatus.EXPIRED, closed_at=now
            )
            if not comparisons[lease.comparison_id].is_gold:
                Comparison.objects.filter(pk=lease.comparison_id).update(
                    lease_count=F("lease_count") - 1
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
        if not comparison.is_gold:
            update["lease_count"] = F("lease_count") + 1
            update["complete"] = Value(False)  # one vote fewer, one lease: never complete
        Comparison.objects.filter(pk=comparison.pk).update(**update)
        member: dict[str, Any] = {"judgment_count": F("judgment_count") - 1}
        if judgment.gold_correct is not None:
            member["gold_answered"] = F("gold_answered") - 1
            member["gold_correct"] = F("gold_correct") - int(judgment.gold_correct)
        Membership.objects.filter(project=project, user=annotator).update(**member)
        Assignment.objects.filter(pk=assignment_id).update(
            status=AssignmentStatus.UNDONE, closed_at=now
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
    again = _assignment_queryset().get(pk=lease.pk)
    if project.scheme == Scheme.LISTWISE:
        _listwise_shown(again)
    return UndoResult(again, judgment)


def _option_of(judgment: Judgment, comparison: Comparison) -> str | None:
    """The judgment's vote as the comparison counts it: a, b, tie or both_bad (None: a
    ranking, which moves no pairwise vote)."""
    if judgment.choice == Choice.RANKING:
        return None
    if judgment.chosen_id is None:
        return judgment.choice
    return "a" if judgment.chosen_id == comparison.candidate_a_id else "b"


@dataclass(frozen=True)
class InvalidationResult:
    judgments: int  # judgments marked invalid now
    comparisons: int  # comparisons whose counts moved back
    reopened: int  # of those, comparisons that were complete and take votes again


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
        _comparisons_recount(comparison_ids, overlap=project.overlap)
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


def _comparisons_recount(comparison_ids: list[int], *, overlap: int) -> None:
    """Sets each comparison's judgment count, votes per option, split and completion from its
    valid judgments (the caller holds the comparisons' row locks)."""
    valid = Judgment.objects.filter(comparison_id=OuterRef("pk"), invalidated_at__isnull=True)

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
        complete=Case(
            When(is_gold=False, judgment_count__gte=overlap, then=Value(True)),
            When(is_gold=False, then=Value(False)),
            default=F("complete"),
        ),
    )
