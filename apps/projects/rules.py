"""Rules written once as data, so that Python and SQL read the same text: a rule is a tuple of
comparisons (left term, operator, right term), all of which must hold. `holds` evaluates one
in Python over loaded values; `as_sql` writes it as an SQL boolean (PostgreSQL and SQLite)
over the SQL expression of each term. A term is a name the caller gives a value, "accuracy"
(correct / answered, from the terms of those names), or a literal: "0" or "false".
"""

import operator
from collections.abc import Callable, Mapping
from typing import Any

Rule = tuple[tuple[str, str, str], ...]

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
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
}
_LITERALS: dict[str, tuple[Any, str]] = {"0": (0, "0"), "false": (False, "FALSE")}


def holds(rule: Rule, values: Mapping[str, Any]) -> bool:
    """Whether each comparison of the rule holds over `values`, in order: a comparison is not
    evaluated once an earlier one failed (accuracy only once answered > 0)."""

    def value(term: str) -> Any:
        if term in _LITERALS:
            return _LITERALS[term][0]
        if term == "accuracy":
            return values["correct"] / values["answered"]
        return values[term]

    return all(_COMPARE[op](value(left), value(right)) for left, op, right in rule)


def as_sql(rule: Rule, terms: Mapping[str, str]) -> str:
    """The rule as an SQL boolean over each term's SQL expression. SQL may evaluate a
    conjunction in any order, so accuracy divides by NULLIF(answered, 0): NULL, not an error."""

    def expression(term: str) -> str:
        if term in _LITERALS:
            return _LITERALS[term][1]
        if term == "accuracy":
            return f"CAST({terms['correct']} AS DOUBLE PRECISION) / NULLIF({terms['answered']}, 0)"
        return terms[term]

    return "(" + " AND ".join(f"{expression(a)} {op} {expression(b)}" for a, op, b in rule) + ")"
