"""The pick, as one PostgreSQL statement.

The active batches of the project are walked in priority order (a handful of rows), and for each
one a LATERAL subquery scans that batch's partial index for the policy, skipping comparisons the
annotator judged or skipped and rows other transactions hold (SKIP LOCKED). The outer LIMIT 1
stops at the first batch that yields a row, so a batch that is exhausted, paused or capped for
this annotator costs one index probe, not a scan.
"""

from apps.projects.models import AssignmentPolicy

FILLED = "(c.judgment_count + c.lease_count)"

POLICY_ORDER = {
    AssignmentPolicy.BREADTH_FIRST: f"{FILLED}, c.rank",
    AssignmentPolicy.DEPTH_FIRST: f"{FILLED} DESC, c.rank",
    AssignmentPolicy.UNCERTAIN_FIRST: f"c.split, {FILLED}, c.rank",
    AssignmentPolicy.RANDOM: "c.rank",
}

_ACTIVE_BATCHES = """
    SELECT b.id, b.priority FROM batches_batch b
    WHERE b.project_id = %(project)s AND b.status = 'active'
      AND (b.annotator_cap IS NULL OR (
            SELECT count(*) FROM judging_judgment j
            WHERE j.annotator_id = %(annotator)s AND j.batch_id = b.id
          ) < b.annotator_cap)
    ORDER BY b.priority DESC, b.id
"""


# How many rows of a batch's head a bounded probe reads before it gives up.
WINDOW = 256


def pick_sql(policy: str, *, bounded: bool = False) -> str:
    """Ordinary comparisons: open, under the overlap, not judged or skipped by the annotator,
    and not under an open lease of theirs. The last rule is what keeps the pick free of
    deadlocks: a reclaim may be expiring that old lease at this moment, holding its row while it
    waits for the comparison's lock; inserting a second open lease on the same comparison would
    then wait on the reclaim through the unique index while holding that very lock (it did
    deadlock, in the abandoned-leases race test).

    Unbounded, the probe reads the batch's index in the policy's order until it finds a row the
    annotator may take: cheap unless the head of that order is the annotator's own past work
    (a level of depth first that only they have voted on, say). Bounded, it reads at most
    WINDOW rows of the head, then filters; the caller falls back when that finds nothing.
    Rows that other transactions hold are skipped, never waited for: a scan that waited would
    keep the locks of rows it then rejected, and two such scans deadlock (they did, in the
    64-thread test). So at the very tail of a queue, while the last open comparisons are held by
    other requests for a moment, a pick may find nothing: "nothing free right now".
    """
    order = POLICY_ORDER[AssignmentPolicy(policy)]
    head = ""
    if bounded:
        head_order = order.replace("c.", "h.")
        head = f"""
          AND c.id IN (
            SELECT h.id FROM batches_comparison h
            WHERE h.batch_id = b.id AND NOT h.complete AND NOT h.is_gold
              AND (h.judgment_count + h.lease_count) < %(overlap)s AND h.rank >= %(rank_from)s
            ORDER BY {head_order}
            LIMIT {WINDOW})"""
    return f"""
    SELECT picked.id FROM ({_ACTIVE_BATCHES}) b
    CROSS JOIN LATERAL (
        SELECT c.id FROM batches_comparison c
        WHERE c.batch_id = b.id AND NOT c.complete AND NOT c.is_gold
          AND {FILLED} < %(overlap)s
          AND c.rank >= %(rank_from)s{head}
          AND NOT EXISTS (SELECT 1 FROM judging_judgment j
                          WHERE j.comparison_id = c.id AND j.annotator_id = %(annotator)s)
          AND NOT EXISTS (SELECT 1 FROM judging_skip s
                          WHERE s.comparison_id = c.id AND s.annotator_id = %(annotator)s)
          AND NOT EXISTS (SELECT 1 FROM judging_assignment a
                          WHERE a.comparison_id = c.id AND a.annotator_id = %(annotator)s
                            AND a.status = 'open')
        ORDER BY {order}
        LIMIT 1
        FOR UPDATE OF c SKIP LOCKED
    ) picked
    ORDER BY b.priority DESC, b.id
    LIMIT 1
    """


# Gold items: any the annotator has never been given, from a random point of their order. No
# lock: gold items have no overlap, so any number of annotators may hold one at once.
GOLD_PICK_SQL = f"""
    SELECT picked.id FROM ({_ACTIVE_BATCHES}) b
    CROSS JOIN LATERAL (
        SELECT c.id FROM batches_comparison c
        WHERE c.batch_id = b.id AND c.is_gold AND c.rank >= %(rank_from)s
          AND NOT EXISTS (SELECT 1 FROM judging_assignment a
                          WHERE a.comparison_id = c.id AND a.annotator_id = %(annotator)s)
        ORDER BY c.rank
        LIMIT 1
    ) picked
    ORDER BY b.priority DESC, b.id
    LIMIT 1
"""
