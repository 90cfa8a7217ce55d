"""The order in which each assignment policy hands out a batch's open comparisons: one table,
from which the queue's partial indexes (batches.models) and the pick's statements
(apps.judging.queue.sql_pick, through queue.policy) are both generated, so that they never
disagree.

It lives here, beside Comparison, because the indexes are part of Comparison's Meta: models
cannot import the queue (the queue imports them).
"""

from typing import Any

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Abs
from django.db.models.lookups import GreaterThan, GreaterThanOrEqual

from apps.projects.models import AssignmentPolicy

# The keys a policy orders by: "filled" is the slots taken (votes plus leases), "split" how far
# apart the votes are, "doubt" how undecided the order of the comparison's two models is on the
# project's leaderboard (Comparison.pair_doubt, 0 the most; agreement.pair_doubt keeps it), "rank"
# a random number drawn at each new level (no one owns its head).
# Each key is (name, descending).
# Every policy that orders by the votes serves the audit sample first ("audit", descending:
# is_audit true before false), so that it receives the full overlap whatever that order would
# give it. Random needs no such key: which comparisons it serves never depends on their votes,
# and the sample never stops early (complete_condition), so its votes are a uniform sample's
# as they come (and its index stays a plain range from a random rank on).
POLICY_ORDER: dict[AssignmentPolicy, tuple[tuple[str, bool], ...]] = {
    AssignmentPolicy.BREADTH_FIRST: (("audit", True), ("filled", False), ("rank", False)),
    AssignmentPolicy.DEPTH_FIRST: (("audit", True), ("filled", True), ("rank", False)),
    # Uncertain first spends the votes where they can still change something: on the model
    # pairs whose order the leaderboard has not settled, and within them on the most split
    # comparisons. Without models (or before a fit) every row's doubt is 0: split votes first.
    AssignmentPolicy.UNCERTAIN_FIRST: (
        ("audit", True),
        ("doubt", False),
        ("split", False),
        ("filled", False),
        ("rank", False),
    ),
    AssignmentPolicy.RANDOM: (("rank", False),),
}

# Each policy's partial index (one per policy, scanned within one batch).
INDEX_NAMES = {
    AssignmentPolicy.BREADTH_FIRST: "queue_breadth",
    AssignmentPolicy.DEPTH_FIRST: "queue_depth",
    AssignmentPolicy.UNCERTAIN_FIRST: "queue_uncertain",
    AssignmentPolicy.RANDOM: "queue_random",
}

# The queue's partial indexes cover open, ordinary comparisons only: complete ones and gold
# items never slow a scan down. An open, ordinary comparison has none of these flags.
_CLOSED_FLAGS = ("complete", "is_gold")
OPEN_ORDINARY = Q(**{flag: False for flag in _CLOSED_FLAGS})

# Each comparison carries its project's policy (Comparison.policy, which Project.save keeps in
# step), so that a row enters only the indexes its project reads: breadth first's, which holds
# every open row because every policy reads it (the pick's second probe, sql_pick), and its own
# policy's. Four indexes a row were most of what an import cost the server (bench/README).
POLICY_COLUMN = "policy"
_EVERY_POLICY = AssignmentPolicy.BREADTH_FIRST


def index_condition(policy: AssignmentPolicy) -> Q:
    """The rows of the policy's partial index."""
    if policy == _EVERY_POLICY:
        return OPEN_ORDINARY
    return OPEN_ORDINARY & Q(**{POLICY_COLUMN: policy.value})


def policy_sql(policy: str, alias: str) -> str:
    """index_condition's policy half as SQL over comparisons aliased `alias` ("" for breadth
    first, whose index holds every policy's rows): a literal, so that the planner matches the
    partial index (a parameter would leave a generic plan without it)."""
    if AssignmentPolicy(policy) == _EVERY_POLICY:
        return ""
    return f" AND {alias}.{POLICY_COLUMN} = '{AssignmentPolicy(policy).value}'"


# The slots a comparison has taken: its valid votes plus its open leases.
_VOTES = "judgment_count"  # the comparison's valid votes
_LEASES = "lease_count"  # its open leases (gold items' leases take no slot)
FILLED = F(_VOTES) + F(_LEASES)


def open_ordinary_sql(alias: str) -> str:
    """OPEN_ORDINARY as an SQL boolean over comparisons aliased `alias`."""
    return " AND ".join(f"NOT {alias}.{flag}" for flag in _CLOSED_FLAGS)


def filled_sql(alias: str) -> str:
    """FILLED as an SQL expression over comparisons aliased `alias`."""
    return f"({alias}.{_VOTES} + {alias}.{_LEASES})"


def takes_votes_sql(*, overlap: str, alias: str) -> str:
    """An ordinary comparison a new lease may take, as an SQL boolean over the SQL expression
    of the overlap: open (OPEN_ORDINARY) and a slot free under the overlap."""
    return f"{open_ordinary_sql(alias)} AND {filled_sql(alias)} < {overlap}"


# The column behind each key but "filled" (an expression).
KEY_COLUMNS = {"audit": "is_audit", "doubt": "pair_doubt", "split": "split", "rank": "rank"}


def _key_expression(name: str) -> F | CombinedExpression:
    return FILLED if name == "filled" else F(KEY_COLUMNS[name])


def queue_indexes() -> list[models.Index]:
    """One partial index per policy, in the policy's order within a batch."""
    return [
        models.Index(
            F("batch"),
            *(
                _key_expression(name).desc() if descending else _key_expression(name)
                for name, descending in keys
            ),
            name=INDEX_NAMES[policy],
            condition=index_condition(policy),
        )
        for policy, keys in POLICY_ORDER.items()
    ]


# "Complete": an ordinary comparison is complete once its valid votes reach the project's
# overlap, or, with adaptive stopping on (the project's stop_margin above 0, projects.stopping),
# once the votes for one candidate lead those for the other by the margin (ties and "both bad"
# count for neither; a ranking moves neither count, so a listwise comparison never stops early).
# It then leaves the queue's indexes (OPEN_ORDINARY). Gold items have no overlap and are never
# complete. Written once, here: the ORM's condition and value and the PL/pgSQL's text are all
# made by the functions below, from these names, so that every writer of `complete` (submit,
# undo, invalidation, an overlap or stopping change) and every reader that counts it holds the
# same rule. tests/judging/test_queue_rules.py checks on the database that the ORM's and the
# SQL's verdicts agree.
_NEVER_COMPLETE = "is_gold"
_NEVER_STOPS = "is_audit"  # the audit sample receives the full overlap: it never stops early
_SIDES = ("votes_a", "votes_b")


def _side_votes(side: str, votes_added: int, option: str | None) -> Any:
    """F(side) after `votes_added` votes for `option` (a, b, tie, both_bad; None: no side)."""
    return F(side) + votes_added if option == side.removeprefix("votes_") else F(side)


def complete_condition(
    *, overlap: Any, margin: Any, votes_added: int = 0, option: str | None = None
) -> Q:
    """The rule as a filter on Comparison, for an UPDATE that adds `votes_added` votes for
    `option` (a, b, tie or both_bad; negative to take them back: its expressions read the row as
    it was before it). `overlap` and `margin` may be expressions (F("project__overlap"),
    F("project__stop_margin")); a margin of 0 is stopping off."""
    full = Q(**{f"{_VOTES}__gte": overlap - votes_added})
    if isinstance(margin, int) and margin <= 0:
        return Q(**{_NEVER_COMPLETE: False}) & full
    lead = Abs(
        _side_votes(_SIDES[0], votes_added, option) - _side_votes(_SIDES[1], votes_added, option)
    )
    decided = Q(GreaterThanOrEqual(lead, margin)) & Q(**{_NEVER_STOPS: False})
    if not isinstance(margin, int):
        decided &= Q(GreaterThan(margin, 0))
    return Q(**{_NEVER_COMPLETE: False}) & (full | decided)


def complete_value(
    *, overlap: Any, margin: Any, votes_added: int = 0, option: str | None = None
) -> Case:
    """What an UPDATE that adds `votes_added` votes for `option` sets `complete` to: the
    rule's verdict."""
    condition = complete_condition(
        overlap=overlap, margin=margin, votes_added=votes_added, option=option
    )
    return Case(When(condition, then=Value(True)), default=Value(False))


def complete_sql(
    *, overlap: str, margin: str, votes_added: int = 0, option: str = "", alias: str = ""
) -> str:
    """The rule as an SQL boolean, over the SQL expressions of the overlap and the margin;
    `option`: the SQL expression of the option the added votes are for (a text: 'a', 'b', ...);
    `alias` qualifies the comparison's columns (none: the row an UPDATE sets, read as it was
    before it)."""
    column = f"{alias}.{{}}" if alias else "{}"

    def added(expression: str, when: str = "") -> str:
        if not votes_added:
            return expression
        step = f"{'+' if votes_added > 0 else '-'} {abs(votes_added)}"
        if not when:
            return f"({expression} {step})"
        return f"({expression} {step[0]} CASE WHEN {when} THEN {abs(votes_added)} ELSE 0 END)"

    votes = added(column.format(_VOTES))
    sides = [
        added(column.format(side), f"{option} = '{side.removeprefix('votes_')}'")
        if option
        else column.format(side)
        for side in _SIDES
    ]
    return (
        f"(NOT {column.format(_NEVER_COMPLETE)} AND ({votes} >= {overlap} OR "
        f"{_decided(margin, sides[0], sides[1], column.format(_NEVER_STOPS))}))"
    )


def _decided(margin: str, votes_a: str, votes_b: str, never_stops: str) -> str:
    return f"(NOT {never_stops} AND {margin} > 0 AND abs({votes_a} - {votes_b}) >= {margin})"


def decided_sql(*, margin: str, alias: str) -> str:
    """The rule's stopping half alone, as an SQL boolean over comparisons aliased `alias`: the
    lead reaches the margin, outside the audit sample (what a late vote is refused on, beside a
    full overlap)."""
    votes_a, votes_b = (f"{alias}.{side}" for side in _SIDES)
    return f"({_decided(margin, votes_a, votes_b, f'{alias}.{_NEVER_STOPS}')})"
