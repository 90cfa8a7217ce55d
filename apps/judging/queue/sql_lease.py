"""A lease's own steps, written once as shared statements (see statements.py): closing it, and
taking or freeing its slot. Every door that closes a lease (submit's refusals, skip, undo,
reclaim, a removed member's page) and every one that opens one (next) runs these, through a
cursor or embedded in a PL/pgSQL function.

Gold comparisons have no overlap, so their leases take no slot: HOLDS_SLOT is the one place
that rule is written for the counters (here, and in submit's COMPARISON_VOTE, which gives the
slot back in the same UPDATE as the vote).
"""

from datetime import datetime

from apps.judging.models import AssignmentStatus
from apps.judging.queue import statements

# The lease ends: status is 'expired', 'submitted', 'skipped' or (a judgment taken back) 'undone'.
LEASE_CLOSE = """UPDATE judging_assignment SET status = %(status)s, closed_at = %(now)s
    WHERE id = %(assignment)s"""

# Its comparison's slot: taken when the lease opens, given back (freed: how many leases of the
# comparison closed, usually 1) when it closes without a judgment.
HOLDS_SLOT = "NOT is_gold"  # a condition on a batches_comparison row
SLOT_TAKE = f"""UPDATE batches_comparison SET lease_count = lease_count + 1
    WHERE id = %(comparison)s AND {HOLDS_SLOT}"""
SLOT_FREE = f"""UPDATE batches_comparison SET lease_count = lease_count - %(freed)s
    WHERE id = %(comparison)s AND {HOLDS_SLOT}"""


def lease_close(
    *, assignment: int, comparison: int, status: AssignmentStatus, now: datetime, was_open: bool
) -> None:
    """Closes a lease through a cursor (LEASE_CLOSE) and, when it was still open (a reclaimed
    one gave its slot back already), frees its slot (SLOT_FREE): for the doors that run in
    Python (submit's refusals, skip, undo, a removed member's page). The caller holds the
    lease's lock."""
    statements.run(LEASE_CLOSE, {"status": status.value, "now": now, "assignment": assignment})
    if was_open:
        statements.run(SLOT_FREE, {"comparison": comparison, "freed": 1})
