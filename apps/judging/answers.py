"""What an annotator answers, checked: its shape here, then against the project's scheme.

The shape (types, ranges, lengths) needs no project and is checked before anything is sent to
the database. The project's rules (its scheme, criteria, flags and rationale rule) are checked
with the lease locked, by the one table of answer_rules.py: in Python on the ORM path, as SQL in
annotate_submit (queue.sql_submit) on PostgreSQL; either way the message comes from `MESSAGES`.

Sides: the annotator answers about the screen (left, right; a graded strength below 0 favours
the left response). What is stored is oriented to the comparison's candidates (A, B), whichever
side each was shown on, so that votes from different leases add up.
"""

from dataclasses import dataclass, field
from typing import Any

from apps.judging.models import Choice

MAX_STRENGTH = 3
MAX_RATIONALE = 10_000
STRENGTH_RANGE = f"from -{MAX_STRENGTH} to {MAX_STRENGTH}"

MESSAGES = {
    "bad_choice": "choice must be one of {detail}.",
    "needs_strength": (
        f"This project is graded: send strength, from -{MAX_STRENGTH} (the left response is "
        f"significantly better) to {MAX_STRENGTH} (the right one is), 0 for negligibly better "
        "or unsure."
    ),
    "no_strength": "This project is not graded: send choice, without strength.",
    "bad_criteria": (
        "criteria must answer each of this project's criteria, and only them: {detail}."
    ),
    "no_criteria": "This project has no criteria: send no criteria.",
    "bad_criterion_answer": (
        "criteria[{detail}]: answer as the overall judgment is answered in this project."
    ),
    "bad_flags": "flags must be among this project's flags: {detail}.",
    "no_flags": "This project has no flags: send no flags.",
    "no_rationale": "This project takes no rationale: send none.",
    "short_rationale": "The rationale must be at least {detail} characters long.",
    "needs_ranking": (
        "This project ranks all the responses: send ranking, a list of the responses' ids "
        "(or of lists of ids that tie), best first."
    ),
    "no_ranking": "This project compares pairs: send choice, not ranking.",
    "bad_ranking": "ranking must list each response shown exactly once: {detail}.",
    "no_ties": "This project takes no ties: each group of the ranking holds one response.",
}


def message(code: str, detail: str = "") -> str:
    return MESSAGES[code].format(detail=detail)


@dataclass(frozen=True)
class Pick:
    """One answer on the screen's terms: a choice, and for graded projects its strength."""

    choice: str
    strength: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"choice": self.choice, "strength": self.strength}


@dataclass(frozen=True)
class Answer:
    overall: Pick
    criteria: dict[str, Pick] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    rationale: str = ""
    # Listwise: groups of the responses' ids as shown to the annotator, best first.
    ranking: list[list[str]] | None = None


class AnswerError(ValueError):
    """The answer is malformed; the message says how (HTTP 400)."""


def pick_parse(choice: object, strength: object, where: str) -> Pick:
    """A choice, a strength or both (consistent): graded answers may send the strength alone."""
    if strength is not None:
        if isinstance(strength, bool) or not isinstance(strength, int):
            raise AnswerError(f"{where}strength must be a whole number {STRENGTH_RANGE}.")
        if not -MAX_STRENGTH <= strength <= MAX_STRENGTH:
            raise AnswerError(f"{where}strength must be {STRENGTH_RANGE}.")
        implied = Choice.LEFT if strength < 0 else Choice.RIGHT if strength > 0 else Choice.TIE
        if choice not in (None, "", implied.value):
            raise AnswerError(
                f"{where}choice {choice!r} contradicts strength {strength} (which means "
                f"{implied.value!r}); send one of them, or both consistent."
            )
        return Pick(implied.value, strength)
    if not isinstance(choice, str) or choice not in Choice.values:
        raise AnswerError(f"{where}choice must be one of {', '.join(Choice.values)}.")
    return Pick(choice)


def answer_parse(
    *,
    choice: object = None,
    strength: object = None,
    criteria: object = None,
    flags: object = None,
    rationale: object = "",
    ranking: object = None,
) -> Answer:
    """The answer's shape, checked without the project. Raises AnswerError."""
    groups = None if ranking is None else ranking_parse(ranking)
    if groups is not None:
        if choice not in (None, "", Choice.RANKING) or strength is not None:
            raise AnswerError("Send a ranking, or a choice: not both.")
        choice = Choice.RANKING.value
    overall = pick_parse(choice, strength, "")
    picks: dict[str, Pick] = {}
    if criteria not in (None, {}):
        if not isinstance(criteria, dict):
            raise AnswerError(
                'criteria must be an object: {"<criterion>": "<choice>" or <strength>}.'
            )
        for name, value in criteria.items():
            where = f"criteria[{name}]: "
            if isinstance(value, dict):
                picks[name] = pick_parse(value.get("choice"), value.get("strength"), where)
            elif isinstance(value, int) and not isinstance(value, bool):
                picks[name] = pick_parse(None, value, where)
            else:
                picks[name] = pick_parse(value, None, where)
    flag_list: list[str] = []
    if flags not in (None, []):
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise AnswerError("flags must be a list of strings.")
        flag_list = sorted(set(flags))
    if not isinstance(rationale, str):
        raise AnswerError("rationale must be a string.")
    if len(rationale) > MAX_RATIONALE:
        raise AnswerError(f"rationale is longer than {MAX_RATIONALE} characters.")
    if "\x00" in rationale or any("\x00" in name for name in [*picks, *flag_list]):
        raise AnswerError("The answer contains a NUL character.")
    return Answer(overall, picks, flag_list, rationale.strip(), groups)


MAX_RANKED = 8


def ranking_parse(ranking: object) -> list[list[str]]:
    """Groups of ids, best first: ["c2", ["c1", "c3"], "c4"] (a list is a tie)."""
    if not isinstance(ranking, list) or not ranking or len(ranking) > MAX_RANKED:
        raise AnswerError(
            f"ranking must be a list of 1 to {MAX_RANKED} response ids (or lists of ids that "
            "tie), best first."
        )
    groups = []
    for item in ranking:
        group = item if isinstance(item, list) else [item]
        if not group or not all(isinstance(i, str) and i and "\x00" not in i for i in group):
            raise AnswerError("Each place of the ranking is a response id, or a list of them.")
        groups.append(group)
    return groups


def oriented(pick: Pick, *, left_is_a: bool) -> dict[str, Any]:
    """The pick as stored: {"option": a | b | tie | both_bad, "strength": A's advantage}."""
    flip = -1 if left_is_a else 1  # screen strength < 0 favours the left response
    if pick.choice in (Choice.LEFT, Choice.RIGHT):
        option = "a" if (pick.choice == Choice.LEFT) == left_is_a else "b"
    else:
        option = pick.choice
    strength = None if pick.strength is None else pick.strength * flip
    return {"option": option, "strength": strength}


def stored(answer: Answer, *, left_is_a: bool) -> dict[str, Any]:
    """The answer as stored for a lease that shows candidate A on the left (`left_is_a`) or on
    the right: the overall pick (`oriented`; a ranking has no option) and each criterion's."""
    overall = oriented(answer.overall, left_is_a=left_is_a)
    if answer.overall.choice == Choice.RANKING:
        overall["option"] = None
    criteria = {name: oriented(pick, left_is_a=left_is_a) for name, pick in answer.criteria.items()}
    return {**overall, "criteria": criteria}


def stored_sides(answer: Answer) -> dict[str, dict[str, Any]]:
    """`stored` for either side, keyed "true" and "false" (left_is_a as SQL text): for
    annotate_submit, which learns the lease's side only as it reads it, and so orients nothing
    itself."""
    return {str(side).lower(): stored(answer, left_is_a=side) for side in (True, False)}


def on_screen(stored: dict[str, Any], *, left_is_a: bool) -> dict[str, Any]:
    """The inverse of `oriented`: a stored pick back on the screen's terms of its lease."""
    option, strength = stored.get("option"), stored.get("strength")
    choice: str | None = option
    if option in ("a", "b"):
        choice = Choice.LEFT.value if (option == "a") == left_is_a else Choice.RIGHT.value
    flip = -1 if left_is_a else 1
    return {"choice": choice, "strength": None if strength is None else strength * flip}
