"""Consistency probes (Project.repeat_rate): a share of each annotator's judgments is shown to
them again later, sides swapped, and the second answer compared with the first.

- Drawn right after a judgment is stored (`probe_after_submit`, called by the queue's
  judgment_submit, the path every door takes): a person's valid, ordinary (not gold) pairwise or
  graded judgment is drawn when a hash of its id falls below the rate, as the audit sample is
  (apps.batches.audit): deterministic, so a retry or a test draws the same.
- Due once `repeat_after` more of the annotator's valid judgments in the project came after the
  original; served on the judging page before the queue's next comparison, one open at a time,
  never while a lease of theirs is open (`probe_next`). It looks like any comparison.
- Answered through its own route (`probe_answer`): the answer is checked by the project's rules
  as a judgment is, then only its overall choice is kept, oriented to the candidates, and
  compared with the original's. A probe is not a Judgment: it never counts toward a
  comparison's votes, overlap, exports or agreement; only the repeat consistency reads it
  (`repeat_counts`, agreement.repeats).

The REST API serves probes to a client that asks for them (`probes=1` on the next endpoint, and
on a judgment's, skip's or probe answer's `?next=1`): the item then says `kind: "probe"` and is
answered or skipped at its own routes (apps.judging.api). A client that does not ask is never
handed one, as it would post the probe's id to the assignments' routes: an annotator who works
only through such a client is never probed (their probes wait unserved).
"""

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from annotate.errors import BadRequest, Conflict, NotFound
from apps.batches.audit import HASH_RANGE
from apps.batches.models import Comparison
from apps.judging import answers
from apps.judging.answer_rules import answer_problem
from apps.judging.answers import Pick
from apps.judging.models import (
    Assignment,
    AssignmentStatus,
    Choice,
    Judgment,
    RepeatProbe,
    Source,
)
from apps.projects.models import Membership, Project, Role, Scheme

logger = logging.getLogger(__name__)

# Another multiplier than the audit sample's, so that which judgments are probed does not follow
# which comparisons are audited when ids of both run alike.
PROBE_MULTIPLIER = 2246822519
PROBE_CHOICES = ("a", "b", "tie", "both_bad")


class ProbeError(BadRequest):
    """The probe's answer is malformed or breaks the project's rules (HTTP 400)."""


class ProbeNotFound(NotFound):
    """No probe served to this annotator in this project has this id (HTTP 404)."""

    def __str__(self) -> str:
        return "No such comparison is waiting for your answer in this project."


class ProbeAnswered(Conflict):
    """The probe was answered (or skipped) already; the first answer stands (HTTP 409)."""

    def __str__(self) -> str:
        return "You have already answered this comparison: your first answer stands."


def probe_drawn(judgment_id: int, rate: float) -> bool:
    """Whether judgment `judgment_id` is probed at `rate`: a hash of the id below the rate."""
    if rate <= 0:
        return False
    value = (judgment_id * PROBE_MULTIPLIER) % HASH_RANGE
    return value < round(min(rate, 1.0) * HASH_RANGE)


def oriented_option(choice: str, *, left_id: int, candidate_a_id: int) -> str:
    """A screen choice (left, right, tie, both_bad) as an option of the candidates."""
    return str(answers.oriented(Pick(choice), left_is_a=left_id == candidate_a_id)["option"])


def probe_after_submit(
    *,
    judgment: Judgment,
    project: Project | None = None,
    rate: float | None = None,
    now: datetime | None = None,
) -> RepeatProbe | None:
    """Draws a just-stored judgment for a probe and creates it; None when not drawn.

    `project` is the judgment's when the caller has it loaded, `rate` its repeat rate when the
    caller read it (annotate_submit reports it). Costs no query with either when the rate is 0;
    else 1 (the project's settings), and 2 more for a probe drawn (the membership's role and
    count, the insert). A database error here is logged, not raised: the judgment is stored
    already (committed, unless the caller's transaction holds it), and no probe is the worst
    that happens."""
    if project is not None and project.repeat_rate <= 0:
        return None
    if rate is not None and rate <= 0:
        return None
    if judgment.source != Source.HUMAN or judgment.ranking is not None:
        return None
    try:
        return _probe_create(judgment=judgment, now=now or timezone.now())
    except DatabaseError:
        logger.exception("no consistency probe drawn for judgment %s", judgment.pk)
        return None


def _probe_create(*, judgment: Judgment, now: datetime) -> RepeatProbe | None:
    row = (
        Comparison.objects.filter(pk=judgment.comparison_id)
        .values_list(
            "project_id",
            "project__repeat_rate",
            "project__repeat_after",
            "project__scheme",
            "is_gold",
            "candidate_ids",
        )
        .first()
    )
    if row is None:
        return None
    project_id, rate, repeat_after, scheme, is_gold, candidate_ids = row
    if (
        is_gold
        or candidate_ids is not None
        or scheme == Scheme.LISTWISE
        or not probe_drawn(judgment.pk, rate)
    ):
        return None
    member = (
        Membership.objects.filter(project_id=project_id, user_id=judgment.annotator_id)
        .values_list("role", "judgment_count")
        .first()
    )
    # An AI judge's account submits through the same path (its source is marked afterwards).
    if member is None or member[0] == Role.AI:
        return None
    try:
        with transaction.atomic():
            return RepeatProbe.objects.create(
                project_id=project_id,
                annotator_id=judgment.annotator_id,
                comparison_id=judgment.comparison_id,
                original_id=judgment.pk,
                left_id=judgment.right_id,
                right_id=judgment.left_id,
                due_after=member[1] + repeat_after,
                created_at=now,
            )
    except IntegrityError:  # drawn already (one probe per judgment)
        return None


def _probes(project: Project, annotator: User) -> "QuerySet[RepeatProbe]":
    return RepeatProbe.objects.filter(
        project=project,
        annotator=annotator,
        answered_at__isnull=True,
        original__invalidated_at__isnull=True,
    ).select_related("comparison__prompt", "left", "right", "project")


def probe_next(
    *, project: Project, annotator: User, now: datetime | None = None
) -> RepeatProbe | None:
    """The probe to show the annotator now, marked served; None when none is due.

    The one served and unanswered comes back (a reload shows it again). Otherwise the oldest
    unserved probe is served once `project.repeat_after` of the annotator's valid judgments in
    the project came after its original, unless a lease of theirs is open (it goes first, its
    slot held) or the queue would give them no work (a cap reached, the gold rule). Costs no
    query while the project's rate is 0; else 2 to 5."""
    if project.repeat_rate <= 0 or project.scheme == Scheme.LISTWISE:
        return None
    probes = _probes(project, annotator)
    served = probes.filter(served_at__isnull=False).order_by("id").first()
    if served is not None:
        return served
    probe = probes.filter(served_at__isnull=True).order_by("id").first()
    if probe is None:
        return None
    later = Judgment.objects.filter(
        annotator=annotator,
        comparison__project=project,
        invalidated_at__isnull=True,
        pk__gt=probe.original_id,
    ).count()
    if later < project.repeat_after:
        return None
    if Assignment.objects.filter(
        annotator=annotator, project=project, status=AssignmentStatus.OPEN
    ).exists():
        return None
    member = Membership.objects.filter(project=project, user=annotator).first()
    if member is None or member.blocked_reason(project):
        return None
    now = now or timezone.now()
    RepeatProbe.objects.filter(pk=probe.pk, served_at__isnull=True).update(served_at=now)
    probe.served_at = now
    return probe


def probe_lease(probe: RepeatProbe) -> Assignment:
    """An unsaved lease that shows the probe as the judging page shows any comparison."""
    lease = Assignment(
        project=probe.project,
        comparison=probe.comparison,
        annotator_id=probe.annotator_id,
        left=probe.left,
        right=probe.right,
    )
    lease.shown = None  # a pair
    return lease


def probe_served(
    *,
    probe_id: int,
    project: Project,
    annotator: User,
    lock: bool = False,
    answered: bool = False,
) -> RepeatProbe:
    """A probe served to this annotator in this project and not answered yet (locked with
    `lock`); ProbeNotFound for any other id, ProbeAnswered for one answered or skipped (unless
    `answered`: then it is returned as it is)."""
    probes = RepeatProbe.objects.select_related("original", "comparison")
    if lock:
        probes = probes.select_for_update()
    probe = probes.filter(
        pk=probe_id, project=project, annotator=annotator, served_at__isnull=False
    ).first()
    if probe is None:
        raise ProbeNotFound(probe_id)
    if probe.answered_at is not None and not answered:
        raise ProbeAnswered()
    return probe


def probe_answer(
    *,
    probe_id: int,
    project: Project,
    annotator: User,
    choice: str | None = None,
    strength: int | None = None,
    criteria: dict[str, Any] | None = None,
    flags: list[str] | None = None,
    rationale: str = "",
    now: datetime | None = None,
) -> RepeatProbe:
    """Records the annotator's answer to a probe served to them, on the screen's terms as
    judgment_submit takes it, and whether it is the original's answer (oriented to the
    candidates: the sides were swapped). The answer is checked as a judgment is (ProbeError);
    only its overall choice is kept. ProbeNotFound for a probe not served to them here.

    The second time, the first answer stands: the same answer again (a client's retry after a
    lost response, a double click) returns the probe as it was stored, with `replayed` set and
    nothing changed; any other answer, or an answer to a probe passed on, is ProbeAnswered."""
    with transaction.atomic():
        probe = probe_served(
            probe_id=probe_id, project=project, annotator=annotator, lock=True, answered=True
        )
        try:
            answer = answers.answer_parse(
                choice=choice,
                strength=strength,
                criteria=criteria,
                flags=flags,
                rationale=rationale,
            )
        except answers.AnswerError as exc:
            if probe.answered_at is not None:
                raise ProbeAnswered() from None
            raise ProbeError(str(exc)) from None
        if probe.answered_at is not None:
            return _replayed(probe, answer.overall.choice)
        if answer.overall.choice == Choice.RANKING:
            raise ProbeError(answers.message("no_ranking"))
        if problem := answer_problem(project, answer):
            raise ProbeError(answers.message(*problem))
        a_id = probe.comparison.candidate_a_id
        original = probe.original
        probe.choice = oriented_option(
            answer.overall.choice, left_id=probe.left_id, candidate_a_id=a_id
        )
        first = oriented_option(original.choice, left_id=original.left_id, candidate_a_id=a_id)
        probe.consistent = probe.choice == first
        probe.answered_at = now or timezone.now()
        probe.save(update_fields=["choice", "consistent", "answered_at"])
    return probe


def probe_skip(
    *, probe_id: int, project: Project, annotator: User, now: datetime | None = None
) -> RepeatProbe:
    """The annotator passed on a probe: it is closed unanswered (no choice, consistent null)
    and counts for nothing. ProbeNotFound as for probe_answer; passing again returns the probe
    as it was (`replayed`), passing on an answered one is ProbeAnswered."""
    with transaction.atomic():
        probe = probe_served(
            probe_id=probe_id, project=project, annotator=annotator, lock=True, answered=True
        )
        if probe.answered_at is not None:
            if probe.choice:
                raise ProbeAnswered()
            probe.replayed = True
            return probe
        probe.answered_at = now or timezone.now()
        probe.save(update_fields=["answered_at"])
    return probe


def _replayed(probe: RepeatProbe, choice: str) -> RepeatProbe:
    """An answered probe answered again with `choice` (on the screen's terms of its showing):
    the probe as stored, `replayed`, if that is the answer it holds; else ProbeAnswered."""
    again = oriented_option(
        choice, left_id=probe.left_id, candidate_a_id=probe.comparison.candidate_a_id
    )
    if not probe.choice or again != probe.choice:
        raise ProbeAnswered()
    probe.replayed = True
    return probe


def repeat_counts(*, project: Project, batch_id: int | None = None) -> dict[int, tuple[int, int]]:
    """Per annotator id: (probes answered, of them consistent), over probes whose original
    still counts (not invalidated). One query."""
    probes = RepeatProbe.objects.filter(
        project=project, consistent__isnull=False, original__invalidated_at__isnull=True
    )
    if batch_id is not None:
        probes = probes.filter(comparison__batch_id=batch_id)
    rows = probes.values("annotator_id").annotate(
        answered=Count("id"), consistent_count=Count("id", filter=Q(consistent=True))
    )
    return {row["annotator_id"]: (row["answered"], row["consistent_count"]) for row in rows}


def probe_next_after(*, assignment_id: int, annotator: User) -> RepeatProbe | None:
    """probe_next in the project of the annotator's assignment `assignment_id`, for a judgment
    or skip that asked for its next item with probes allowed. Called once that has committed:
    a database error is logged and taken as no probe (the queue's lease is tried next)."""
    try:
        assignment = (
            Assignment.objects.filter(pk=assignment_id, annotator=annotator)
            .select_related("project")
            .first()
        )
        if assignment is None:
            return None
        return probe_next(project=assignment.project, annotator=annotator)
    except DatabaseError:
        logger.warning("no probe after assignment %s", assignment_id, exc_info=True)
        return None
