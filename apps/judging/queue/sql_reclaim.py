"""The reclaim: expired leases give their slots back. Written once, as shared statements
(statements.py), and run two ways with the same control flow:

- on PostgreSQL, as annotate_reclaim (RECLAIM_FUNCTION), which embeds them: one round trip,
  called by reclaim.py and from inside annotate_next (sql_next);
- elsewhere, by reclaim.py through a cursor: two statements (one when nothing has expired).

Leases another transaction holds are left to it (SKIP LOCKED, on PostgreSQL), and the
comparisons' rows are taken in id order, one statement each, so that concurrent sweeps never
deadlock. The gold rule (their leases take no slot) is sql_lease.SLOT_FREE's.
"""

from apps.judging.queue.sql_lease import SLOT_FREE
from apps.judging.queue.statements import embed

# What the expire reads under `FOR UPDATE SKIP LOCKED` on PostgreSQL. SQLite has no row locks:
# writers are serialized there.
SKIP_LOCKED = "FOR UPDATE SKIP LOCKED"


def expire_sql(lock: str) -> str:
    """Expires up to `limit` open leases whose time is up at `now`, the earliest first, of
    `project` (of every project when NULL), and returns each one's comparison. `lock` is
    SKIP_LOCKED where the database locks rows, else empty."""
    return f"""UPDATE judging_assignment SET status = 'expired', closed_at = %(now)s
    WHERE id IN (
        SELECT e.id FROM judging_assignment e
        WHERE e.status = 'open' AND e.expires_at <= %(now)s
          AND (%(project)s IS NULL OR e.project_id = %(project)s)
        ORDER BY e.expires_at
        LIMIT %(limit)s
        {lock}
    )
    RETURNING comparison_id"""


# annotate_reclaim's variable for each parameter.
_VARIABLES = {
    "now": "p_now",
    "project": "p_project",
    "limit": "p_limit",
    "comparison": "v_comparison",
    "freed": "v_freed",
}

# The control flow, twice: here and in reclaim.leases_reclaim (Python): expire, then give back
# each comparison's slots (how many of its leases expired), in comparison id order.
RECLAIM_FUNCTION = f"""
CREATE FUNCTION annotate_reclaim(p_project bigint, p_now timestamptz, p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $fn$
-- Expires up to p_limit open leases whose time is up (of one project, or all when NULL), gives
-- their slots back, and returns how many it expired.
DECLARE
    v_comparison bigint;
    v_freed integer;
    v_reclaimed integer := 0;
BEGIN
    FOR v_comparison, v_freed IN
        WITH expired AS ({embed(expire_sql(SKIP_LOCKED), _VARIABLES)})
        SELECT comparison_id, count(*) FROM expired GROUP BY comparison_id ORDER BY comparison_id
    LOOP
        {embed(SLOT_FREE, _VARIABLES)};
        v_reclaimed := v_reclaimed + v_freed;
    END LOOP;
    RETURN v_reclaimed;
END
$fn$;
"""
