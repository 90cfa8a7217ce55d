"""The project's rules for an answer whose shape is checked (answers.py): its scheme, criteria,
flags and rationale rule, checked with the lease locked.

Each rule is written once, in a table that holds its Python and its SQL side by side: whether a
pick fits the scheme (`PICK_FITS`, from which annotate_fits is made) and the ordered checks
(`ANSWER_RULES`). `answer_problem` evaluates them on the ORM path; annotate_submit
(queue.sql_submit) embeds `answer_problem_sql` on PostgreSQL and reports the same codes, whose
messages are answers.MESSAGES. tests/judging/test_rule_tables.py runs both forms of every rule.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.judging.answers import Answer, Pick
from apps.judging.models import Choice
from apps.projects.models import Project, RationaleRule, Scheme
from apps.projects.rules import Cases, case_holds

# The least a required rationale holds, whatever the project's minimum length says.
REQUIRED_RATIONALE_MIN = 1


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


@dataclass(frozen=True)
class AnswerRule:
    """One of the project's rules for an answer: when the answer breaks it (`breaks`, over the
    project and the answer; `sql`, the same over ANSWER_TERMS' parameters), and the problem's
    detail (`detail`; `detail_sql`, NULL or '' for none)."""

    code: str
    breaks: Callable[[Any, Answer], bool]
    sql: str
    detail: Callable[[Any, Answer], str] = lambda project, answer: ""
    detail_sql: str = "''"


# The SQL's parameters: the answer as sent (a ranking is given or not; criteria
# {"<name>": {"choice", "strength"}}; flags a jsonb list) and the project's settings (criteria
# and flags as the project stores them, jsonb).
ANSWER_TERMS = (
    "choice",
    "strength",
    "ranked",
    "criteria",
    "flags",
    "rationale",
    "scheme",
    "allow_tie",
    "allow_both_bad",
    "project_criteria",
    "project_flags",
    "rationale_rule",
    "rationale_min_length",
)
_GRADED = f"%(scheme)s = '{Scheme.GRADED.value}'"
_LISTWISE = f"%(scheme)s = '{Scheme.LISTWISE.value}'"
# A both-bad answer, where allowed, has no strength to give.
_BOTH_BAD = f"(%(choice)s = '{Choice.BOTH_BAD.value}' AND %(allow_both_bad)s)"


def _fits_sql(pick: str) -> str:
    """annotate_fits (PICK_FITS) of a pick: `pick` holds its choice and strength terms."""
    choice, strength = pick.split()
    return f"annotate_fits({choice}, {strength}, {_GRADED}, %(allow_tie)s, %(allow_both_bad)s)"


_NAMES = "jsonb_array_elements(%(project_criteria)s) WITH ORDINALITY AS e(value, n)"
_MISFIT = (
    f"(SELECT e.value->>'name' FROM {_NAMES} WHERE NOT "
    + _fits_sql(
        "%(criteria)s->(e.value->>'name')->>'choice' "
        "(%(criteria)s->(e.value->>'name')->>'strength')::integer"
    )
    + " ORDER BY e.n LIMIT 1)"
)
_LEAST = (
    f"CASE WHEN %(rationale_rule)s = '{RationaleRule.REQUIRED.value}' "
    f"THEN greatest(%(rationale_min_length)s, {REQUIRED_RATIONALE_MIN}) "
    "ELSE %(rationale_min_length)s END"
)


def _misfit(project: Any, answer: Answer) -> str:
    """The first of the project's criteria whose answer does not fit the scheme, or ''."""
    names = [c["name"] for c in project.criteria]
    return next((n for n in names if not _pick_fits(project, answer.criteria[n])), "")


# The project's rules for an answer, in the order they are checked: the first the answer breaks
# is the problem reported. Written once: answer_problem evaluates `breaks` and `detail`, and
# annotate_submit (queue.sql_submit) checks the same rules as `sql` and `detail_sql`
# (answer_problem_sql); tests/judging/test_rule_tables.py runs every rule's cases through both.
# Each rule holds only once the rules before it held: bad_criterion_answer reads each criterion's
# answer, which bad_criteria made sure is there.
ANSWER_RULES: tuple[AnswerRule, ...] = (
    AnswerRule(
        "needs_ranking",
        lambda p, a: p.scheme == Scheme.LISTWISE and a.ranking is None,
        f"{_LISTWISE} AND NOT %(ranked)s",
    ),
    AnswerRule(
        "no_ranking",
        lambda p, a: p.scheme != Scheme.LISTWISE and a.ranking is not None,
        f"NOT {_LISTWISE} AND %(ranked)s",
    ),
    AnswerRule(
        "needs_strength",
        lambda p, a: (
            p.scheme == Scheme.GRADED and a.overall.strength is None and not _both_bad(p, a)
        ),
        f"{_GRADED} AND %(strength)s IS NULL AND NOT {_BOTH_BAD}",
    ),
    AnswerRule(
        "no_strength",
        lambda p, a: (
            p.scheme == Scheme.PAIRWISE and a.overall.strength is not None and not _both_bad(p, a)
        ),
        f"%(scheme)s = '{Scheme.PAIRWISE.value}' AND %(strength)s IS NOT NULL AND NOT {_BOTH_BAD}",
    ),
    AnswerRule(
        "bad_choice",
        lambda p, a: p.scheme != Scheme.LISTWISE and not _pick_fits(p, a.overall),
        f"NOT {_LISTWISE} AND NOT {_fits_sql('%(choice)s %(strength)s')}",
        lambda p, a: ", ".join(allowed_choices(p.allow_tie, p.allow_both_bad)),
        "concat_ws(', ', 'left', 'right', CASE WHEN %(allow_tie)s THEN 'tie' END, "
        "CASE WHEN %(allow_both_bad)s THEN 'both_bad' END)",
    ),
    AnswerRule(
        "no_criteria",
        lambda p, a: bool(a.criteria) and not p.criteria,
        "%(criteria)s <> '{}'::jsonb AND jsonb_array_length(%(project_criteria)s) = 0",
    ),
    AnswerRule(
        "bad_criteria",
        lambda p, a: sorted(a.criteria) != sorted(c["name"] for c in p.criteria),
        # Skipped at no cost when neither the project nor the answer has any.
        "(%(criteria)s <> '{}'::jsonb OR %(project_criteria)s <> '[]'::jsonb) AND "
        "(SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM jsonb_object_keys(%(criteria)s) k)"
        " <> (SELECT coalesce(array_agg(e.value->>'name' ORDER BY e.value->>'name'), '{}') "
        f"FROM {_NAMES})",
        lambda p, a: ", ".join(c["name"] for c in p.criteria),
        f"(SELECT string_agg(e.value->>'name', ', ' ORDER BY e.n) FROM {_NAMES})",
    ),
    AnswerRule(
        "bad_criterion_answer",
        lambda p, a: bool(_misfit(p, a)),
        f"%(project_criteria)s <> '[]'::jsonb AND {_MISFIT} IS NOT NULL",
        _misfit,
        _MISFIT,
    ),
    AnswerRule(
        "no_flags",
        lambda p, a: bool(a.flags) and not p.flags,
        "%(flags)s <> '[]'::jsonb AND jsonb_array_length(%(project_flags)s) = 0",
    ),
    AnswerRule(
        "bad_flags",
        lambda p, a: not set(a.flags) <= set(p.flags),
        "NOT %(flags)s <@ %(project_flags)s",
        lambda p, a: ", ".join(p.flags),
        "(SELECT string_agg(f.name, ', ' ORDER BY f.n) "
        "FROM jsonb_array_elements_text(%(project_flags)s) WITH ORDINALITY AS f(name, n))",
    ),
    AnswerRule(
        "no_rationale",
        lambda p, a: p.rationale == RationaleRule.OFF and bool(a.rationale),
        f"%(rationale_rule)s = '{RationaleRule.OFF.value}' AND %(rationale)s <> ''",
    ),
    AnswerRule(
        "short_rationale",
        lambda p, a: (
            bool(a.rationale or p.rationale == RationaleRule.REQUIRED)
            and len(a.rationale) < rationale_min(p)
        ),
        f"(%(rationale)s <> '' OR %(rationale_rule)s = '{RationaleRule.REQUIRED.value}') "
        f"AND char_length(%(rationale)s) < {_LEAST}",
        lambda p, a: str(rationale_min(p)),
        f"({_LEAST})::text",
    ),
)


def _both_bad(project: Any, answer: Answer) -> bool:
    return answer.overall.choice == Choice.BOTH_BAD and bool(project.allow_both_bad)


def answer_problem(project: Any, answer: Answer) -> tuple[str, str] | None:
    """(code, detail) of the first of ANSWER_RULES the answer breaks, or None."""
    for rule in ANSWER_RULES:
        if rule.breaks(project, answer):
            return (rule.code, rule.detail(project, answer))
    return None


def answer_problem_sql(terms: dict[str, str], outcome: str) -> tuple[str, str]:
    """ANSWER_RULES as SQL over `terms` (an expression for each of ANSWER_TERMS): the code of
    the first rule broken (NULL for none), and its detail, an expression over `outcome` (a
    variable or column holding that code)."""
    problem = "\n        ".join(
        f"WHEN {rule.sql % terms} THEN '{rule.code}'" for rule in ANSWER_RULES
    )
    details = "\n        ".join(
        f"WHEN '{rule.code}' THEN {rule.detail_sql % terms}"
        for rule in ANSWER_RULES
        if rule.detail_sql != "''"
    )
    return f"CASE\n        {problem}\n    END", f"CASE {outcome}\n        {details}\n    END"


def rationale_min(project: Project) -> int:
    """The fewest characters a rationale may have in the project (when one is given, or
    required): the judging page reads it from here, and ANSWER_RULES' SQL is the same (_LEAST)."""
    if project.rationale == RationaleRule.REQUIRED:
        return max(project.rationale_min_length, REQUIRED_RATIONALE_MIN)
    return project.rationale_min_length
