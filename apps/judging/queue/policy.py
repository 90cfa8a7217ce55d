"""The queue's numbers and the policies' orders: what the pick's statements (sql_pick) read,
so that each is written once. The orders come from batches.queue_order's table, which
also generates the partial indexes that hold them.
"""

from apps.batches.queue_order import KEY_COLUMNS, POLICY_ORDER, filled_sql
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


def sql_order(policy: str, alias: str) -> str:
    """The policy's ORDER BY over comparisons aliased `alias`, for the pick's statements: the
    order of its partial index, so that the scan reads the index."""
    columns = {"filled": filled_sql(alias)} | {
        name: f"{alias}.{column}" for name, column in KEY_COLUMNS.items()
    }
    return ", ".join(
        columns[name] + (" DESC" if descending else "")
        for name, descending in POLICY_ORDER[AssignmentPolicy(policy)]
    )
