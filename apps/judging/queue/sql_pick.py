"""The queue's PostgreSQL functions: the pick, the reclaim, next and submit.

Next and submit, what an annotator waits on, were a dozen ORM statements per cycle, each a round
trip built and parsed by Python, plus BEGIN and COMMIT. As functions, each is one statement in
autocommit: one round trip and its own transaction. PL/pgSQL runs every statement inside on a
fresh snapshot under READ COMMITTED, as a Django transaction's statements were, and the locks
are taken in one order everywhere (an assignment row, then its comparison), so that no two
transactions wait on each other in a cycle. The ORM path (pick.py, submit.py) keeps the same rules
for SQLite.

The functions are (re)installed by every `migrate` (apps.judging.apps) from the text built here:
they hold no data, so replacing them is always safe.

The pick walks the project's active batches in priority order (a handful of rows; a batch where
the annotator reached its cap is left out), and in each reads that batch's partial index for the
policy (batches.models: one per policy, WHERE NOT complete AND NOT is_gold) in the policy's
order, and takes the first comparison the annotator may judge: open, under the overlap, not
judged or skipped by them, and not under an open lease of theirs. That last rule is what keeps
the pick free of deadlocks: a reclaim may be expiring that old lease at this moment, holding its
row while it waits for the comparison's lock; inserting a second open lease on the same
comparison would then wait on the reclaim through the unique index while holding that very
lock (it did deadlock, in the abandoned-leases race test).

Three probes per batch, so that the cost does not grow with the annotator's history:
1. the policy's head, at most WINDOW rows, one at a time in order: for most requests the first
   row is taken;
2. for the other policies, the breadth-first head, also bounded: when the head of depth first is
   all the annotator's own past work (a level only they have voted on), this reaches the levels
   they have not worked on;
3. only if both find nothing, the exact probe, one statement that reads the index until a row
   fits, so that "nothing left" is never said of rows a bounded probe did not reach.

Rows that other transactions hold are skipped, never waited for (SKIP LOCKED): a scan that
waited would keep the locks of rows it then rejected, and two such scans deadlock (they did, in
the 64-thread test). So at the very tail of a queue, while the last open comparisons are held by
other requests for a moment, a pick may find nothing: "nothing free right now".
"""

from apps.judging.queue.policy import POLICIES, sql_order
from apps.projects.models import AssignmentPolicy

# Open and under the overlap; what the policy's partial index holds, and from v_from on.
_OPEN = """NOT {a}.complete AND NOT {a}.is_gold
      AND ({a}.judgment_count + {a}.lease_count) < p_overlap AND {a}.rank >= v_from"""

# The annotator has not judged or skipped it and holds no open lease on it.
NOT_MINE = """NOT EXISTS (SELECT 1 FROM judging_judgment j
                      WHERE j.comparison_id = c.id AND j.annotator_id = p_annotator)
      AND NOT EXISTS (SELECT 1 FROM judging_skip s
                      WHERE s.comparison_id = c.id AND s.annotator_id = p_annotator)
      AND NOT EXISTS (SELECT 1 FROM judging_assignment a
                      WHERE a.comparison_id = c.id AND a.annotator_id = p_annotator
                        AND a.status = 'open')"""

ACTIVE_BATCHES = """
    SELECT b.id FROM batches_batch b
    WHERE b.project_id = p_project AND b.status = 'active'
      AND (b.annotator_cap IS NULL OR (
            SELECT count(*) FROM judging_judgment j
            WHERE j.annotator_id = p_annotator AND j.batch_id = b.id
          ) < b.annotator_cap)
    ORDER BY b.priority DESC, b.id"""


def head_sql(policy: str) -> str:
    """The first `p_window` open comparisons of batch `v_batch`, in the policy's order."""
    return f"""SELECT h.id FROM batches_comparison h
    WHERE h.batch_id = v_batch AND {_OPEN.format(a="h")}
    ORDER BY {sql_order(policy, "h")}
    LIMIT p_window"""


# Takes comparison v_head if the annotator may: its conditions are checked again under the lock.
TAKE_SQL = f"""SELECT c.id INTO o_id FROM batches_comparison c
    WHERE c.id = v_head AND {_OPEN.format(a="c")}
      AND {NOT_MINE}
    FOR UPDATE SKIP LOCKED;"""


def exact_sql(policy: str) -> str:
    """The first comparison of batch `v_batch` the annotator may take, however deep it is."""
    return f"""SELECT c.id INTO o_id FROM batches_comparison c
    WHERE c.batch_id = v_batch AND {_OPEN.format(a="c")}
      AND {NOT_MINE}
    ORDER BY {sql_order(policy, "c")}
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED;"""


# Gold items: any the annotator has never been given, from a random point of their order. No
# lock: gold items have no overlap, so any number of annotators may hold one at once.
GOLD_PICK_SQL = f"""SELECT picked.id INTO v_id FROM ({ACTIVE_BATCHES}) b
    CROSS JOIN LATERAL (
        SELECT c.id FROM batches_comparison c
        WHERE c.batch_id = b.id AND c.is_gold AND c.rank >= v_from
          AND NOT EXISTS (SELECT 1 FROM judging_assignment a
                          WHERE a.comparison_id = c.id AND a.annotator_id = p_annotator)
        ORDER BY c.rank
        LIMIT 1
    ) picked
    LIMIT 1;"""


def _branches(sql_for: "dict[str, str]") -> str:
    """IF p_policy = ... THEN <sql> ELSIF ... END IF over every policy."""
    parts = [
        f"{'IF' if not n else 'ELSIF'} p_policy = '{policy}' THEN\n{sql}"
        for n, (policy, sql) in enumerate(sql_for.items())
    ]
    return "\n".join(parts) + "\nEND IF;"


def _head_loop(policy: str, probe: int) -> str:
    return f"""FOR v_head IN {head_sql(policy)} LOOP
    {TAKE_SQL}
    IF o_id IS NOT NULL THEN
        o_probe := {probe};
        RETURN;
    END IF;
END LOOP;"""


def pick_function() -> str:
    heads = _branches({policy: _head_loop(policy, 1) for policy in POLICIES})
    exact = _branches({policy: exact_sql(policy) for policy in POLICIES})
    breadth = _head_loop(AssignmentPolicy.BREADTH_FIRST, 2)
    return f"""
CREATE FUNCTION annotate_pick(
    p_project bigint, p_annotator bigint, p_policy text, p_overlap integer, p_rank_from integer,
    p_window integer, OUT o_id bigint, OUT o_probe integer
) LANGUAGE plpgsql AS $fn$
-- Locks the ordinary comparison the annotator should judge next (o_id; NULL when none), and
-- says which probe found it (o_probe): 1 the policy's bounded head, 2 the bounded breadth-first
-- head, 0 the exact probe. From p_rank_from, then once more from 0 (the random policy).
DECLARE
    v_batch bigint;
    v_head bigint;
    v_from integer := p_rank_from;
BEGIN
    IF NOT p_policy = ANY (ARRAY{POLICIES!r}) THEN
        RAISE EXCEPTION 'unknown assignment policy %', p_policy;
    END IF;
    LOOP
        FOR v_batch IN {ACTIVE_BATCHES} LOOP
            {heads}
            IF p_policy <> '{AssignmentPolicy.BREADTH_FIRST.value}' THEN
                {breadth}
            END IF;
            {exact}
            IF o_id IS NOT NULL THEN
                o_probe := 0;
                RETURN;
            END IF;
        END LOOP;
        EXIT WHEN v_from = 0;
        v_from := 0;
    END LOOP;
END
$fn$;
"""


RECLAIM_FUNCTION = """
CREATE FUNCTION annotate_reclaim(p_project bigint, p_now timestamptz, p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $fn$
-- Expires up to p_limit open leases whose time is up (of one project, or all when NULL) and
-- gives their slots back. Leases another transaction holds are left to it (SKIP LOCKED), and
-- comparisons are locked in id order, so that concurrent sweeps never deadlock.
DECLARE
    v_ids bigint[];
    v_comparisons bigint[];
BEGIN
    SELECT array_agg(e.id), array_agg(e.comparison_id) INTO v_ids, v_comparisons
    FROM (
        SELECT a.id, a.comparison_id FROM judging_assignment a
        WHERE a.status = 'open' AND a.expires_at <= p_now
          AND (p_project IS NULL OR a.project_id = p_project)
        ORDER BY a.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) e;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE judging_assignment SET status = 'expired', closed_at = p_now WHERE id = ANY (v_ids);
    PERFORM 1 FROM batches_comparison WHERE id = ANY (v_comparisons) ORDER BY id FOR UPDATE;
    -- Gold leases took no slot, so only ordinary comparisons get one back.
    UPDATE batches_comparison c SET lease_count = c.lease_count - e.n
    FROM (SELECT u.id, count(*) AS n FROM unnest(v_comparisons) AS u(id) GROUP BY u.id) e
    WHERE c.id = e.id AND NOT c.is_gold;
    RETURN cardinality(v_ids);
END
$fn$;
"""
