"""Taking a judgment: checks, caps, the late-submission rule, and the counts it moves.

On PostgreSQL a pairwise or graded answer goes to annotate_submit (submit_postgresql). The ORM
path here (SQLite, and listwise rankings everywhere) runs the same rules: the answer's from
answer_rules' table, the rest as sql_submit_steps' and sql_lease's statements, the ones
annotate_submit embeds. Only the order of the steps is written in both."""

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from annotate.rows import converted
from apps.batches.models import Candidate, Comparison, random_rank
from apps.judging import answers
from apps.judging.answer_rules import answer_problem
from apps.judging.answers import Answer
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.judging.probes import probe_after_submit
from apps.judging.queue import backend, sql_lease, sql_submit_steps, statements
from apps.judging.queue.errors import (
    JudgmentConflict,
    JudgmentError,
    cap_refusal,
    refusal_for,
    validate_text,
)
from apps.judging.queue.policy import MAX_DURATION_MS, MAX_IDEMPOTENCY_KEY
from apps.judging.queue.repeat import judgment_for_response, retry_result
from apps.judging.queue.results import SubmitResult
from apps.judging.queue.standing import Locked, lock_assignment, standing_refusal
from apps.judging.queue.submit_postgresql import judgment_submit_postgresql


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


def _cap_check(locked: Locked, comparison: Comparison, now: datetime) -> JudgmentConflict | None:
    """The caps, checked again as the judgment arrives (sql_submit_steps.CAP_REFUSAL, which
    annotate_submit embeds; no statement when neither cap is set). A refused judgment closes its
    lease and frees its slot (sql_lease), and the refusal is returned for the caller to raise
    once its transaction has committed that."""
    assignment = locked.assignment
    caps = {"project_cap": assignment.project.annotator_cap, "batch_cap": locked.batch_cap}
    if caps == {"project_cap": None, "batch_cap": None}:
        return None
    row = statements.run(
        sql_submit_steps.CAP_REFUSAL,
        {
            "annotator": assignment.annotator_id,
            "project": assignment.project_id,
            "batch": comparison.batch_id,
            **caps,
        },
        lock=sql_submit_steps.MEMBER_LOCK,
    )
    outcome = row[0] if row else None
    if not outcome:
        return None
    if assignment.status == AssignmentStatus.OPEN:
        sql_lease.lease_close(
            assignment=assignment.pk,
            comparison=comparison.pk,
            status=AssignmentStatus.EXPIRED,
            now=now,
            was_open=True,
        )
    cap = caps[outcome]
    assert cap is not None
    return cap_refusal(outcome, cap)


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
    with_membership: bool = False,
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
    Queries: on PostgreSQL 1 (annotate_submit, which also reports the project's repeat rate);
    on SQLite 5 (lock assignment, insert judgment, close assignment, count, member's counts), 6
    with a cap (one statement checks both); with a repeat rate above 0, 1 more, and 2 more for a
    judgment drawn for a consistency probe (apps.judging.probes). `with_membership`: where
    annotate_submit took the judgment, the result carries the annotator's membership as it left
    them (a submit that asks for the next lease then needs no query for it); elsewhere None.
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
    validate_text(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY)
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
    if backend.postgresql() and answer.ranking is None:
        result = judgment_submit_postgresql(
            assignment_id=assignment_id,
            annotator=annotator,
            answer=answer,
            idempotency_key=idempotency_key,
            duration_ms=duration_ms,
            now=now,
            with_membership=with_membership,
        )
        if result.created:
            probe_after_submit(judgment=result.judgment, rate=result.repeat_rate, now=now)
        return result
    with transaction.atomic():
        locked = lock_assignment(assignment_id=assignment_id, annotator=annotator)
        assignment = locked.assignment
        refusal: Exception | None = standing_refusal(locked, now)
        if refusal is None:
            if problem := answer_problem(assignment.project, answer):
                raise JudgmentError(answers.message(*problem))
            ranking_ids = (
                None if answer.ranking is None else _ranking_ids(assignment, answer.ranking)
            )
            if assignment.status == AssignmentStatus.SUBMITTED:
                earlier = judgment_for_response(Judgment.objects.get(assignment=assignment).pk)
                if idempotency_key and earlier.judgment.idempotency_key == idempotency_key:
                    return retry_result(earlier, answer)
                raise refusal_for("judged")
            if assignment.status in (AssignmentStatus.SKIPPED, AssignmentStatus.UNDONE):
                raise refusal_for(str(assignment.status))
            comparison = assignment.comparison
            # An open lease gives its slot back with the vote, even past its time, until a
            # reclaim took it back (sql_submit_steps.COMPARISON_VOTE).
            was_open = assignment.status == AssignmentStatus.OPEN
            if assignment.status != AssignmentStatus.OPEN:
                _check_late_submission(assignment)
            refusal = _cap_check(locked, comparison, now)
        if refusal is None:
            result = _judgment_store(
                locked=locked,
                comparison=comparison,
                annotator=annotator,
                answer=answer,
                ranking_ids=ranking_ids,
                duration_ms=duration_ms,
                idempotency_key=idempotency_key,
                was_open=was_open,
                now=now,
            )
    if refusal is not None:
        raise refusal
    # After the commit (unless the caller's transaction holds it): the judgment stands whatever
    # becomes of its probe.
    probe_after_submit(judgment=result.judgment, project=assignment.project, now=now)
    return result


def _judgment_store(
    *,
    locked: Locked,
    comparison: Comparison,
    annotator: User,
    answer: Answer,
    ranking_ids: list[list[int]] | None,
    duration_ms: int | None,
    idempotency_key: str,
    was_open: bool,
    now: datetime,
) -> SubmitResult:
    """Stores the judgment and moves the counts, by the statements annotate_submit embeds
    (sql_submit_steps.JUDGMENT_INSERT derives the winner and gold_correct); the caller holds the
    locks. The Judgment returned is built from what the INSERT reports, not reloaded."""
    assignment = locked.assignment
    left_is_a = assignment.left_id == comparison.candidate_a_id
    # Oriented to the candidates as annotate_submit stores it (answers.stored).
    oriented = answers.stored(answer, left_is_a=left_is_a)
    option = oriented["option"]
    try:
        # No savepoint: on a conflict the whole transaction is rolled back anyway.
        row = statements.run(
            f"{sql_submit_steps.JUDGMENT_INSERT}\n    {sql_submit_steps.JUDGMENT_RETURNING}",
            {
                "comparison": comparison.pk,
                "annotator": annotator.pk,
                "assignment": assignment.pk,
                "choice": answer.overall.choice,
                "left": assignment.left_id,
                "right": assignment.right_id,
                "strength": oriented["strength"],
                "criteria": _json_column("criteria", oriented["criteria"]),
                "flags": _json_column("flags", answer.flags),
                "ranking": _json_column("ranking", ranking_ids),
                "guideline_version": assignment.guideline_version,
                "rationale": answer.rationale,
                "duration": duration_ms,
                "key": idempotency_key,
                "option": option,
                "now": now,
            },
        )
    except IntegrityError:
        raise refusal_for("already_judged") from None
    assert row is not None
    judgment_id, chosen_id, gold_correct = row
    gold_correct = converted(Judgment._meta.get_field("gold_correct"), gold_correct)
    judgment = Judgment(
        pk=judgment_id,
        comparison_id=comparison.pk,
        batch_id=comparison.batch_id,
        annotator=annotator,
        assignment=assignment,
        choice=answer.overall.choice,
        left_id=assignment.left_id,
        right_id=assignment.right_id,
        chosen_id=chosen_id,
        strength=oriented["strength"],
        criteria=oriented["criteria"],
        flags=answer.flags,
        ranking=ranking_ids,
        guideline_version=assignment.guideline_version,
        rationale=answer.rationale,
        duration_ms=duration_ms,
        idempotency_key=idempotency_key,
        gold_correct=gold_correct,
        created_at=now,
    )
    judgment._state.adding = False
    # For the response: the winner's imported id, without loading the candidate again.
    chosen_external_id = {
        assignment.left_id: locked.left_external_id,
        assignment.right_id: locked.right_external_id,
    }.get(chosen_id)
    statements.run(
        sql_lease.LEASE_CLOSE,
        {"status": AssignmentStatus.SUBMITTED.value, "now": now, "assignment": assignment.pk},
    )
    # The counts, by the statements annotate_submit embeds (sql_submit_steps).
    statements.run(
        sql_submit_steps.COMPARISON_VOTE,
        {
            "comparison": comparison.pk,
            "option": option,
            "rank": random_rank(),
            "was_open": int(was_open),
            "overlap": assignment.project.overlap,
            "margin": assignment.project.stop_margin,
        },
    )
    statements.run(
        sql_submit_steps.MEMBER_VOTE,
        {
            "project": assignment.project_id,
            "annotator": annotator.pk,
            "gold_correct": gold_correct,
        },
    )
    assignment.status = AssignmentStatus.SUBMITTED
    return SubmitResult(
        judgment, created=True, chosen_external_id=chosen_external_id, left_is_a=left_is_a
    )


def _json_column(column: str, value: Any) -> Any:
    """A value for one of Judgment's JSON columns, as the ORM would send it."""
    field = Judgment._meta.get_field(column)
    assert isinstance(field, Field)
    return field.get_db_prep_save(value, connection)


def _check_late_submission(assignment: Assignment) -> None:
    """A reclaimed lease: sql_submit_steps.LATE_REFUSAL, with the comparison locked."""
    row = statements.run(
        sql_submit_steps.LATE_REFUSAL,
        {
            "annotator": assignment.annotator_id,
            "comparison": assignment.comparison_id,
            "overlap": assignment.project.overlap,
            "margin": assignment.project.stop_margin,
        },
        lock=sql_submit_steps.COMPARISON_LOCK,
    )
    if row is None:  # pragma: no cover - comparisons with assignments are not deleted
        raise JudgmentConflict("This comparison no longer exists.")
    if row[0]:
        raise refusal_for(row[0])
