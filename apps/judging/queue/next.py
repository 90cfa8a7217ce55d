"""Handing out leases: the annotator's open lease or a new one, the prefetch (peek), and the
next lease a submit or skip asked for."""

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotate.rows import converted, loaded
from apps.batches.models import Candidate, Comparison, Prompt
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import backend, policy, statements
from apps.judging.queue.backend import call
from apps.judging.queue.errors import AnnotatorBlocked
from apps.judging.queue.policy import RECLAIM_LIMIT
from apps.judging.queue.reclaim import leases_reclaim
from apps.judging.queue.results import (
    NEXT_BLOCKED,
    NEXT_NONE_LEFT,
    NEXT_UNAVAILABLE,
    NextAfter,
    Peek,
    Preference,
)
from apps.judging.queue.sql_gold import draw, gold_pick, gold_start, preferred
from apps.judging.queue.sql_lease import SLOT_TAKE
from apps.judging.queue.sql_next import LEASE_INSERT, OPEN_LEASE
from apps.judging.queue.sql_pick import comparison_pick, rank_start
from apps.judging.selectors import membership_for_assignment
from apps.projects.models import (
    Membership,
    Project,
    Scheme,
)

logger = logging.getLogger(__name__)


def assignment_queryset() -> "QuerySet[Assignment]":
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
    Queries: 2 when a lease is open; otherwise 6 (open lease, expired leases, pick, insert,
    slot, load), plus 1 for a gold draw, plus 1 when expired leases are reclaimed, plus 1
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
        listwise_shown(lease)
    elif lease is not None:
        # A pair shows no list: said here, so that reading `shown` costs no query (on PostgreSQL
        # the lease comes from annotate_next's row, its shown_order not loaded).
        lease.shown = None
    return lease


def listwise_shown(lease: Assignment) -> None:
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
    shown = [by_id[pk] for pk in order]
    lease.shown = shown
    lease.left, lease.right = shown[0], shown[1]


def _assignment_next_once(
    *,
    project: Project,
    annotator: User,
    membership: Membership | None,
    now: datetime,
    prefer: Preference | None = None,
) -> Assignment | None:
    if backend.postgresql():
        return _assignment_next_postgresql(
            project=project, annotator=annotator, membership=membership, now=now, prefer=prefer
        )
    # next's own statements (sql_next, embedded by annotate_next on PostgreSQL), one by one.
    params: dict[str, Any] = {"project": project.pk, "annotator": annotator.pk, "now": now}
    with transaction.atomic():
        existing = statements.run(OPEN_LEASE, params)
        if existing is not None:
            return assignment_queryset().get(pk=existing[0])
        if reason := _blocked_reason(project=project, annotator=annotator, membership=membership):
            raise AnnotatorBlocked(reason)
        leases_reclaim(project_id=project.pk, now=now, limit=RECLAIM_LIMIT)
        gold = prefer is None and project.gold_rate > 0 and draw() < project.gold_rate
        comparison_id = gold_pick(project=project, annotator=annotator) if gold else None
        if comparison_id is None and prefer is not None:
            comparison_id = preferred(project=project, annotator=annotator, prefer=prefer)
        if comparison_id is None:
            comparison_id = comparison_pick(
                project=project, annotator=annotator, rank_from=rank_start(project)
            ).comparison_id
        if comparison_id is None:
            return None
        params["comparison"] = comparison_id
        params["swap"] = (
            prefer.swap
            if prefer and prefer.comparison_id == comparison_id
            else bool(secrets.randbelow(2))
        )
        expires_at = now + timedelta(seconds=project.lease_seconds)
        params["expires"] = expires_at
        params["guideline_version"] = project.guideline_version
        row = statements.run(LEASE_INSERT, params)
        assert row is not None  # the comparison was just picked: it exists
        assignment_id, left_id, right_id = row
        statements.run(SLOT_TAKE, params)
        # Loaded after the slot is taken, so that its lease_count is the database's.
        comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
            pk=comparison_id
        )
    sides = {c.pk: c for c in (comparison.candidate_a, comparison.candidate_b)}
    return _lease(
        project,
        annotator,
        comparison,
        sides[left_id],
        sides[right_id],
        id=assignment_id,
        created_at=now,
        expires_at=expires_at,
        guideline_version=project.guideline_version,
        shown_order=None,
    )


def _lease(
    project: Project,
    annotator: User,
    comparison: Comparison,
    left: Candidate,
    right: Candidate,
    **values: Any,
) -> Assignment:
    """An open lease as if loaded, its relations set: the fields in `values` (its id and times
    at least) loaded, any other not given deferred."""
    lease = loaded(
        Assignment,
        project_id=project.pk,
        comparison_id=comparison.pk,
        annotator_id=annotator.pk,
        left_id=left.pk,
        right_id=right.pk,
        status=AssignmentStatus.OPEN,
        closed_at=None,
        **values,
    )
    lease.project, lease.comparison, lease.annotator = project, comparison, annotator
    lease.left, lease.right = left, right
    return lease


def _blocked_reason(*, project: Project, annotator: User, membership: Membership | None) -> str:
    """Why the annotator may get no new work here ("" when they may): 1 query without
    `membership`, none with it."""
    if membership is None:
        membership = Membership.objects.filter(project=project, user=annotator).first()
    if membership is None or not (reason := membership.blocked_reason(project)):
        return ""
    # The cap's reason is a verb ("you reached ..."), the gold rule's a noun ("your gold ...").
    whose = "you" if membership.cap_reached(project) else "your"
    return f"No more work for you in this project: {whose} {reason}."


def _assignment_next_postgresql(
    *,
    project: Project,
    annotator: User,
    membership: Membership | None,
    now: datetime,
    prefer: Preference | None = None,
) -> Assignment | None:
    """annotate_next (sql_next) does the whole of it in one statement; then the lease is loaded
    with what it shows. The blocked rule is decided here, from the membership's counters, and
    applied there only when no lease is open."""
    reason = _blocked_reason(project=project, annotator=annotator, membership=membership)
    row = call(
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
            prefer is None and project.gold_rate > 0 and draw() < project.gold_rate,
            rank_start(project),
            gold_start(),
            prefer.swap if prefer else bool(secrets.randbelow(2)),
            policy.WINDOW,
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
    assignment = _lease(
        project,
        annotator,
        comparison,
        loaded(Candidate, id=left_id, external_id=left_external_id, text=left_text),
        loaded(Candidate, id=right_id, external_id=right_external_id, text=right_text),
        id=assignment_id,
        created_at=created_at,
        expires_at=expires_at,
    )
    if project.scheme != Scheme.LISTWISE:
        # A pair shows its two sides: `shown` (deferred shown_order) need not be read back.
        # Listwise leases get theirs from listwise_shown.
        assignment.shown = None
    return assignment


def comparison_peek(*, project: Project, annotator: User) -> Peek | None:
    """What the annotator would most likely be given next, to prefetch: an unsaved lease (no
    id) of the comparison the queue's pick chooses now, on random sides. Nothing is taken or
    kept locked (the pick runs in a transaction rolled back). None when the pick finds nothing,
    and for listwise projects."""
    if project.scheme == Scheme.LISTWISE:
        return None
    # The gold draw happens here, for the comparison after this one: the judgment that names
    # it draws nothing again, so the gold rate holds and the page never swaps a gold item in
    # after the prefetched one (which would give gold items away).
    if project.gold_rate > 0 and draw() < project.gold_rate:
        gold_id = gold_pick(project=project, annotator=annotator)
        if gold_id is not None:
            return _peek_of(project, gold_id)
    # The start is drawn as next draws it (rank_start, on every database): the random
    # policy's prefetches spread over the queue as its leases do.
    with transaction.atomic():
        comparison_id = comparison_pick(
            project=project, annotator=annotator, rank_from=rank_start(project)
        ).comparison_id
        transaction.set_rollback(True)
    if comparison_id is None:
        return None
    return _peek_of(project, comparison_id)


def _peek_of(project: Project, comparison_id: int) -> Peek:
    comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
        pk=comparison_id
    )
    swap = bool(secrets.randbelow(2))
    left, right = comparison.candidate_a, comparison.candidate_b
    if swap:
        left, right = right, left
    peek = Assignment(project=project, comparison=comparison, left=left, right=right)
    return Peek(peek, Preference(comparison.pk, swap))


_NEXT_DETAILS = {
    NEXT_NONE_LEFT: "Nothing is left for you in this project.",
    NEXT_UNAVAILABLE: (
        "The next assignment could not be taken just now (what you sent is stored): ask for "
        "it with POST /api/v1/projects/<slug>/assignments/next/."
    ),
}
_NOT_A_MEMBER = "You are no longer a member of this project."


def assignment_next_after(
    *,
    assignment_id: int,
    annotator: User,
    membership: Membership | None = None,
    now: datetime | None = None,
) -> NextAfter:
    """The annotator's next assignment in the project of `assignment_id`, exactly as
    assignment_next hands it out (their open lease, or a new one), for a submit or skip that
    asked for it in the same request.

    Called once the judgment or skip has committed, in transactions of its own: nothing here
    can take it back. So a failure to take the lease (the database refusing or going away) is
    reported as NEXT_UNAVAILABLE rather than raised, and the caller still answers that the
    judgment was stored. A retry of the submission (same idempotency key) comes here again and
    gets the open lease the first answer carried, if it is still unanswered: no second lease.
    Queries: the membership with its project (none when the submit brought it, `membership`:
    SubmitResult.membership), then assignment_next's.
    """
    if membership is not None:
        return assignment_next_in(membership=membership, annotator=annotator, now=now)
    try:
        membership = membership_for_assignment(user=annotator, assignment_id=assignment_id)
    except DatabaseError:
        logger.warning(
            "next after assignment %s: could not take a lease", assignment_id, exc_info=True
        )
        return NextAfter(None, NEXT_UNAVAILABLE, _NEXT_DETAILS[NEXT_UNAVAILABLE])
    if membership is None:  # removed since (a retry of an earlier judgment)
        return NextAfter(None, NEXT_BLOCKED, _NOT_A_MEMBER)
    return assignment_next_in(membership=membership, annotator=annotator, now=now)


def assignment_next_in(
    *, membership: Membership, annotator: User, now: datetime | None = None
) -> NextAfter:
    """assignment_next_after's answer once the membership is known (a consistency probe's
    answer names its project itself): the lease, or why there is none, never an exception."""
    try:
        lease = assignment_next(
            project=membership.project, annotator=annotator, membership=membership, now=now
        )
    except AnnotatorBlocked as exc:
        return NextAfter(None, NEXT_BLOCKED, str(exc))
    except DatabaseError:
        logger.warning(
            "next in project %s: could not take a lease", membership.project_id, exc_info=True
        )
        return NextAfter(None, NEXT_UNAVAILABLE, _NEXT_DETAILS[NEXT_UNAVAILABLE])
    if lease is None:
        return NextAfter(None, NEXT_NONE_LEFT, _NEXT_DETAILS[NEXT_NONE_LEFT])
    return NextAfter(lease)
