"""A submission retried with the idempotency key of a stored judgment: the same answer is a
retry, another one is refused. Both backends' submit paths share it."""

from django.db.models import Case, F, Value, When

from apps.batches.models import Candidate
from apps.judging import answers
from apps.judging.answers import Answer
from apps.judging.models import Judgment
from apps.judging.queue.errors import IdempotencyConflict
from apps.judging.queue.results import SubmitResult


def retry_result(earlier: Judgment, answer: Answer) -> SubmitResult:
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


def judgment_for_response(judgment_id: int) -> Judgment:
    """A stored judgment with what its response shows (a retry's answer)."""
    return Judgment.objects.annotate(
        chosen_external_id=F("chosen__external_id"),
        left_is_a=Case(
            When(left_id=F("comparison__candidate_a_id"), then=Value(True)),
            default=Value(False),
        ),
    ).get(pk=judgment_id)
