"""Why the queue refuses: its exceptions, and the messages of each refusal (the PL/pgSQL
functions report the same outcomes by name)."""

from annotate.errors import BadRequest, Conflict, Forbidden, NotFound
from apps.judging.queue.results import SubmitResult


class JudgmentError(BadRequest):
    """The judgment is malformed (HTTP 400)."""


class JudgmentConflict(Conflict):
    """The judgment cannot be taken in the queue's current state (HTTP 409)."""


class IdempotencyConflict(JudgmentConflict):
    """The idempotency key was used before with another answer (HTTP 409): `stored` is the
    judgment stored under it, which stands."""

    def __init__(self, stored: SubmitResult) -> None:
        super().__init__(
            "This idempotency key was already used with a different answer; the judgment "
            "stored under it stands. Send a new key for a new answer."
        )
        self.stored = stored


class AssignmentNotFound(NotFound):
    """No such assignment for this annotator (HTTP 404)."""


class AnnotatorBlocked(Forbidden):
    """The annotator may receive no more work in this project (HTTP 403); says why."""


def validate_text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise JudgmentError(f"{name} must be a string.")
    if len(value) > limit:
        raise JudgmentError(f"{name} is longer than {limit} characters.")
    if "\x00" in value:
        raise JudgmentError(f"{name} contains a NUL character.")
    return value


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
STANDING = {
    "not_member": "You are no longer a member of this project.",
    "inactive": "Your account has been deactivated.",
    "stopped": "No more work for you in this project: your {detail}.",
}
_NOTHING_STORED = " Nothing was stored, and the comparison goes back to the pool."


def standing_error(outcome: str, detail: str = "") -> AnnotatorBlocked:
    return AnnotatorBlocked(STANDING[outcome].format(detail=detail) + _NOTHING_STORED)


def cap_refusal(outcome: str, cap: int) -> JudgmentConflict:
    where = "this project" if outcome == "project_cap" else "this batch"
    return JudgmentConflict(
        f"You have reached the cap of {cap} judgments in {where}. This judgment was not stored, "
        "and the comparison goes back to the pool."
    )


def refusal_for(outcome: str) -> Exception:
    """The error for a submission refused with `outcome` (as annotate_submit names them)."""
    error, message = _REFUSALS[outcome]
    return error(message)
