"""A submission retried with the idempotency key of a stored judgment: the same answer is a
retry, another one is refused. Both backends' submit paths share it."""

from apps.batches.models import Candidate
from apps.judging import answers
from apps.judging.answers import Answer
from apps.judging.models import Judgment
from apps.judging.queue.errors import IdempotencyConflict
from apps.judging.queue.results import SubmitResult


def retry_result(earlier: SubmitResult, answer: Answer) -> SubmitResult:
    """A submission with the idempotency key of the judgment stored: the same answer again is a
    retry (created=False); another answer is refused, the first one standing (as Stripe answers
    a key reused with other parameters)."""
    if not _same_answer(earlier.judgment, answer, left_is_a=earlier.left_is_a):
        raise IdempotencyConflict(earlier)
    return earlier


def _same_answer(judgment: Judgment, answer: Answer, *, left_is_a: bool) -> bool:
    """Whether `answer` is the one stored in `judgment`: choice, strength, criteria, flags,
    rationale and ranking. duration_ms is a measurement, not the answer, and is not compared."""
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


def judgment_for_response(judgment_id: int) -> SubmitResult:
    """A stored judgment with what its response shows (a retry's answer), in one query."""
    judgment = (
        Judgment.objects.select_related("chosen", "comparison")
        .only(*_JUDGMENT_FIELDS, "chosen__external_id", "comparison__candidate_a")
        .get(pk=judgment_id)
    )
    return SubmitResult(
        judgment,
        created=False,
        chosen_external_id=judgment.chosen.external_id if judgment.chosen else None,
        left_is_a=judgment.left_id == judgment.comparison.candidate_a_id,
    )


_JUDGMENT_FIELDS = [field.name for field in Judgment._meta.concrete_fields]
