"""Rules written once as data, so that Python and SQL read the same text: a rule is a tuple of
comparisons (left term, operator, right term), all of which must hold. `holds` evaluates one
in Python over loaded values; `as_sql` writes it as an SQL boolean (PostgreSQL and SQLite)
over the SQL expression of each term. A term is a name the caller gives a value, "accuracy"
(correct / answered, from the terms of those names), or a literal: "0", "true", "false",
"null" (compared with = or <>: IS NULL, IS NOT NULL) or a quoted string ("'tie'").
A CASE of rules (`Cases`: the rule of the first condition that holds; none: false) reads the
same way, by `case_holds` and `case_sql`.
"""

import operator
from collections.abc import Callable, Mapping
from typing import Any

Rule = tuple[tuple[str, str, str], ...]
Cases = tuple[tuple[Rule, Rule], ...]

# The gold rule: an annotator whose gold answers (correct of answered) fall below the project's
# minimum accuracy (min_accuracy, 0 for none), once they have given min_answers of them, is
# stopped. Read by Membership.blocked_reason (through gold_stop_reason) and by annotate_submit's
# standing check (apps.judging.queue.sql_submit_steps.STANDING_REFUSAL).
GOLD_STOP: Rule = (
    ("min_accuracy", ">", "0"),
    ("answered", ">", "0"),
    ("answered", ">=", "min_answers"),
    ("accuracy", "<", "min_accuracy"),
)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
}
_LITERALS: dict[str, tuple[Any, str]] = {
    "0": (0, "0"),
    "true": (True, "TRUE"),
    "false": (False, "FALSE"),
    "null": (None, "NULL"),
}
_NULL_SQL = {"=": "IS", "<>": "IS NOT"}


def _literal(term: str) -> tuple[Any, str] | None:
    if term in _LITERALS:
        return _LITERALS[term]
    if term.startswith("'"):
        return term.strip("'"), term
    return None


def holds(rule: Rule, values: Mapping[str, Any]) -> bool:
    """Whether each comparison of the rule holds over `values`, in order: a comparison is not
    evaluated once an earlier one failed (accuracy only once answered > 0)."""

    def value(term: str) -> Any:
        if literal := _literal(term):
            return literal[0]
        if term == "accuracy":
            return values["correct"] / values["answered"]
        return values[term]

    def compare(left: str, op: str, right: str) -> bool:
        if right == "null":
            return (value(left) is None) == (op == "=")
        return _COMPARE[op](value(left), value(right))

    return all(compare(left, op, right) for left, op, right in rule)


def as_sql(rule: Rule, terms: Mapping[str, str]) -> str:
    """The rule as an SQL boolean over each term's SQL expression. SQL may evaluate a
    conjunction in any order, so accuracy divides by NULLIF(answered, 0): NULL, not an error."""

    def expression(term: str) -> str:
        if literal := _literal(term):
            return literal[1]
        if term == "accuracy":
            return f"CAST({terms['correct']} AS DOUBLE PRECISION) / NULLIF({terms['answered']}, 0)"
        return terms[term]

    def compare(left: str, op: str, right: str) -> str:
        if right == "null":
            op = _NULL_SQL[op]
        return f"{expression(left)} {op} {expression(right)}"

    return "(" + " AND ".join(compare(*comparison) for comparison in rule) + ")" if rule else "TRUE"


def case_holds(cases: Cases, values: Mapping[str, Any]) -> bool:
    """The rule of the first case whose condition holds over `values`; false when none does."""
    return next((holds(rule, values) for when, rule in cases if holds(when, values)), False)


def case_sql(cases: Cases, terms: Mapping[str, str]) -> str:
    """The cases as an SQL boolean: false where none applies, or where a NULL term leaves the
    verdict unknown (Python has no unknown)."""
    whens = " ".join(
        f"WHEN {as_sql(when, terms)} THEN {as_sql(rule, terms)}" for when, rule in cases
    )
    return f"coalesce(CASE {whens} ELSE FALSE END, FALSE)"
