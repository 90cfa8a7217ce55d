"""The order in which each assignment policy hands out a batch's open comparisons: one table,
from which the queue's partial indexes (batches.models) and the pick's statements
(apps.judging.queue.sql_pick, through queue.policy) are both generated, so that they never
disagree.

It lives here, beside Comparison, because the indexes are part of Comparison's Meta: models
cannot import the queue (the queue imports them).
"""

from typing import Any

from django.db import models
from django.db.models import F, Q
from django.db.models.expressions import CombinedExpression

from apps.projects.models import AssignmentPolicy

# The keys a policy orders by: "filled" is the slots taken (votes plus leases), "split" how far
# apart the votes are, "rank" a random number drawn at each new level (no one owns its head).
# Each key is (name, descending).
POLICY_ORDER: dict[AssignmentPolicy, tuple[tuple[str, bool], ...]] = {
    AssignmentPolicy.BREADTH_FIRST: (("filled", False), ("rank", False)),
    AssignmentPolicy.DEPTH_FIRST: (("filled", True), ("rank", False)),
    AssignmentPolicy.UNCERTAIN_FIRST: (("split", False), ("filled", False), ("rank", False)),
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
# items never slow a scan down.
OPEN_ORDINARY = Q(complete=False, is_gold=False)
FILLED = F("judgment_count") + F("lease_count")


def _key_expression(name: str) -> F | CombinedExpression:
    return FILLED if name == "filled" else F(name)


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
            condition=OPEN_ORDINARY,
        )
        for policy, keys in POLICY_ORDER.items()
    ]


# "Complete": an ordinary comparison is complete once its votes reach the project's overlap;
# it then leaves the queue's indexes (OPEN_ORDINARY). Gold items have no overlap and are never
# complete. The ORM's condition and the PL/pgSQL's text are both made here.
def complete_condition(*, overlap: Any, votes_added: int = 0) -> Q:
    """The rule as a filter on Comparison, for an UPDATE that adds `votes_added` votes
    (its expressions read the row as it was before it). `overlap` may be an expression."""
    return Q(is_gold=False, judgment_count__gte=overlap - votes_added)


def complete_sql(*, votes: str, overlap: str, is_gold: str = "is_gold") -> str:
    """The same rule in SQL, over the SQL expressions of the votes and the overlap."""
    return f"(NOT {is_gold} AND {votes} >= {overlap})"
