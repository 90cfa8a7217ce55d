"""annotate_submit's adapter: one round trip on PostgreSQL, and its row turned into a Judgment."""

import json
from datetime import datetime

from django.contrib.auth.models import User

from annotate.rows import converted
from apps.judging import answers
from apps.judging.answers import Answer
from apps.judging.models import Judgment
from apps.judging.queue.backend import call
from apps.judging.queue.errors import (
    STANDING,
    JudgmentError,
    cap_refusal,
    refusal_for,
    standing_error,
)
from apps.judging.queue.repeat import judgment_for_response, retry_result
from apps.judging.queue.results import SubmitResult
from apps.projects.models import gold_stop_reason
from apps.projects.selectors import membership_from_json


def judgment_submit_postgresql(
    *,
    assignment_id: int,
    annotator: User,
    answer: Answer,
    idempotency_key: str,
    duration_ms: int | None,
    now: datetime,
    with_membership: bool = False,
) -> SubmitResult:
    """annotate_submit (sql_submit) takes the judgment in one statement, with the same rules as
    the ORM path (submit.py); the Judgment returned is built from what it reports, not reloaded,
    and the result carries the project's repeat rate (the probe's draw needs no query at 0)
    and, `with_membership`, the annotator's membership with its project as the judgment left
    them (the next lease's rules read it)."""
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
        repeat_rate,
        member,
    ) = call(
        "SELECT * FROM annotate_submit(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            assignment_id,
            annotator.pk,
            answer.overall.choice,
            answer.overall.strength,
            json.dumps(criteria),
            json.dumps(answers.stored_sides(answer)),
            json.dumps(answer.flags),
            answer.rationale,
            idempotency_key,
            duration_ms,
            now,
            with_membership,
        ],
    )
    if outcome in answers.MESSAGES:
        raise JudgmentError(answers.message(outcome, detail or ""))
    if outcome in ("project_cap", "batch_cap"):
        raise cap_refusal(outcome, int(detail))
    if outcome in STANDING:
        raise standing_error(outcome, _gold_detail(detail) if outcome == "stopped" else "")
    if outcome == "repeat":
        return retry_result(judgment_for_response(judgment_id), answer)
    if outcome != "created":
        raise refusal_for(outcome)
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
    judgment._state.adding = False
    return SubmitResult(
        judgment,
        created=True,
        chosen_external_id=chosen_external_id,
        left_is_a=left_is_a,
        repeat_rate=repeat_rate,
        membership=None if member is None else membership_from_json(member),
    )


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
