"""The queue's numbers and the policies' orders: what both the ORM pick and the PL/pgSQL one
read, so that each is written once.

A policy orders a batch's open comparisons by "filled" (votes plus leases), "split" (how far
apart the votes are) and "rank" (a random number drawn at each new level, so that no one owns
the head of a level). The partial indexes in batches.models hold each policy's order.
"""

from apps.judging import answers
from apps.projects.models import AssignmentPolicy

MAX_RATIONALE = answers.MAX_RATIONALE
MAX_IDEMPOTENCY_KEY = 128
MAX_DURATION_MS = 2**31 - 1

# How many rows of a batch's head a bounded probe reads before it gives up.
WINDOW = 256

# How many expired leases one reclaim returns to the pool.
RECLAIM_LIMIT = 500

# How long after a judgment its annotator may always take it back, even once its comparison
# has all its votes. While the comparison is still open, they may take it back at any time.
UNDO_SECONDS = 300

POLICIES = [policy.value for policy in AssignmentPolicy]

ORM_ORDER = {
    AssignmentPolicy.BREADTH_FIRST: ["filled", "rank"],
    AssignmentPolicy.DEPTH_FIRST: ["-filled", "rank"],
    AssignmentPolicy.UNCERTAIN_FIRST: ["split", "filled", "rank"],
    AssignmentPolicy.RANDOM: ["rank"],
}


def sql_order(policy: str, alias: str) -> str:
    """The policy's ORDER BY over comparisons aliased `alias`, for the PL/pgSQL pick."""
    filled = f"({alias}.judgment_count + {alias}.lease_count)"
    return {
        AssignmentPolicy.BREADTH_FIRST: f"{filled}, {alias}.rank",
        AssignmentPolicy.DEPTH_FIRST: f"{filled} DESC, {alias}.rank",
        AssignmentPolicy.UNCERTAIN_FIRST: f"{alias}.split, {filled}, {alias}.rank",
        AssignmentPolicy.RANDOM: f"{alias}.rank",
    }[AssignmentPolicy(policy)]
