"""What an annotator answers, checked: its shape here, then against the project's scheme.

The shape (types, ranges, lengths) needs no project and is checked before anything is sent to
the database. The project's rules (its scheme, criteria, flags and rationale rule) are checked
with the lease locked: by `answer_problem` on SQLite, and by annotate_submit (queue.sql_submit) on
PostgreSQL, which reports the same problem codes. Either way the message comes from `MESSAGES`.
Whether a pick fits the scheme is one table (`PICK_FITS`), which annotate_fits is made from;
the order of the checks, and the criteria, flags and rationale rules, are still written in
both (tests/projects/test_schemes.py runs each on both databases).

Sides: the annotator answers about the screen (left, right; a graded strength below 0 favours
the left response). What is stored is oriented to the comparison's candidates (A, B), whichever
side each was shown on, so that votes from different leases add up.
"""

from dataclasses import dataclass, field
from typing import Any

from apps.judging.models import Choice
from apps.projects.models import Project, RationaleRule, Scheme
from apps.projects.rules import Cases, case_holds

MAX_STRENGTH = 3
MAX_RATIONALE = 10_000
# The least a required rationale holds, whatever the project's minimum length says.
REQUIRED_RATIONALE_MIN = 1
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


def allowed_choices(allow_tie: bool, allow_both_bad: bool) -> list[str]:
    allowed = [Choice.LEFT.value, Choice.RIGHT.value]
    if allow_tie:
        allowed.append(Choice.TIE.value)
    if allow_both_bad:
        allowed.append(Choice.BOTH_BAD.value)
    return allowed


# Whether one answer (overall or a criterion's) fits the project's scheme: the rule of the first
# case whose condition holds (projects.rules), over the pick (choice, strength: its range is the
# shape's, checked before) and the project (graded, allow_tie, allow_both_bad). Written once:
# `_pick_fits` evaluates it, and annotate_fits (queue.sql_submit) is its SQL.
PICK_FITS: Cases = (
    (
        (("choice", "=", "'both_bad'"),),
        (("allow_both_bad", "=", "true"), ("strength", "=", "null")),
    ),
    ((("graded", "=", "true"),), (("strength", "<>", "null"),)),
    ((("choice", "=", "'tie'"),), (("allow_tie", "=", "true"), ("strength", "=", "null"))),
    ((("choice", "=", "'left'"),), (("strength", "=", "null"),)),
    ((("choice", "=", "'right'"),), (("strength", "=", "null"),)),
)


def _pick_fits(project: Any, pick: Pick) -> bool:
    return case_holds(
        PICK_FITS,
        {
            "choice": pick.choice,
            "strength": pick.strength,
            "graded": project.scheme == Scheme.GRADED,
            "allow_tie": bool(project.allow_tie),
            "allow_both_bad": bool(project.allow_both_bad),
        },
    )


def answer_problem(project: Any, answer: Answer) -> tuple[str, str] | None:
    """(code, detail) of the first rule of the project the answer breaks, or None.

    annotate_submit (queue.sql_submit) checks the same rules in the same order on PostgreSQL.
    """
    overall = answer.overall
    if project.scheme == Scheme.LISTWISE:
        if answer.ranking is None:
            return ("needs_ranking", "")
        return _rest_problem(project, answer)
    if answer.ranking is not None:
        return ("no_ranking", "")
    graded = project.scheme == Scheme.GRADED
    if overall.choice != Choice.BOTH_BAD or not project.allow_both_bad:
        if graded and overall.strength is None:
            return ("needs_strength", "")
        if not graded and overall.strength is not None:
            return ("no_strength", "")
    if not _pick_fits(project, overall):
        return ("bad_choice", ", ".join(allowed_choices(project.allow_tie, project.allow_both_bad)))
    return _rest_problem(project, answer)


def _rest_problem(project: Any, answer: Answer) -> tuple[str, str] | None:
    """Criteria, flags and the rationale: the rules every scheme shares."""
    names = [c["name"] for c in project.criteria]
    if answer.criteria and not names:
        return ("no_criteria", "")
    if sorted(answer.criteria) != sorted(names):
        return ("bad_criteria", ", ".join(names))
    for name in names:
        if not _pick_fits(project, answer.criteria[name]):
            return ("bad_criterion_answer", name)
    if answer.flags and not project.flags:
        return ("no_flags", "")
    if not set(answer.flags) <= set(project.flags):
        return ("bad_flags", ", ".join(project.flags))
    if project.rationale == RationaleRule.OFF and answer.rationale:
        return ("no_rationale", "")
    least = rationale_min(project)
    if (answer.rationale or project.rationale == RationaleRule.REQUIRED) and len(
        answer.rationale
    ) < least:
        return ("short_rationale", str(least))
    return None


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


def rationale_min(project: Project) -> int:
    """The fewest characters a rationale may have in the project (when one is given, or
    required): annotate_submit (queue.sql_submit) and the judging page read it from here."""
    if project.rationale == RationaleRule.REQUIRED:
        return max(project.rationale_min_length, REQUIRED_RATIONALE_MIN)
    return project.rationale_min_length
