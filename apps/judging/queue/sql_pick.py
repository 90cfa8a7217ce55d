"""The pick: the ordinary comparison an annotator should judge next (the gold pick and the
prefetched comparison are in sql_gold; the reclaim in sql_reclaim). Written once, as SQL
statements with named parameters (`%(annotator)s`, bound by Django's cursor on every backend),
and run two ways with the same control flow, side by side below:

- on PostgreSQL, as annotate_pick, a PL/pgSQL function (pick_function) that embeds these very
  statements, with `FOR UPDATE SKIP LOCKED` appended and the parameters turned into its
  variables (plpgsql): one round trip, called by annotate_next (sql_next) and by the peek;
- elsewhere (SQLite 3.35+, where writers are serialized and nothing is skipped as locked), by
  _pick_statements, statement by statement.

The pick walks the project's active batches in priority order (a handful of rows; a batch where
the annotator reached its cap is left out), and in each reads that batch's partial index for the
policy (batches.models: one per policy, WHERE NOT complete AND NOT is_gold) in the policy's
order, and takes the first comparison the annotator may judge: open, under the overlap, not
judged or skipped by them, and not under an open lease of theirs. That last rule is what keeps
the pick free of deadlocks on PostgreSQL: a reclaim may be expiring that old lease at this
moment, holding its row while it waits for the comparison's lock; inserting a second open lease
on the same comparison would then wait on the reclaim through the unique index while holding
that very lock (it did deadlock, in the abandoned-leases race test).

Three probes per batch, so that the cost does not grow with the annotator's history:
1. the policy's head, at most WINDOW rows, one at a time in order: for most requests the first
   row is taken;
2. for the other policies, the breadth-first head, also bounded: when the head of depth first is
   all the annotator's own past work (a level only they have voted on), this reaches the levels
   they have not worked on;
3. only if both find nothing, the exact probe, one statement that reads the index until a row
   fits, so that "nothing left" is never said of rows a bounded probe did not reach; for the
   other policies, should it find nothing, breadth first's exact probe too.
Each comparison carries its project's policy, and only breadth first's index holds every open
row (queue_order.index_condition): the other policies' probes read their own rows. A pick that
raced a change of the project's policy (read before the change committed, run after it) finds
the rows, now of the new policy, through breadth first's probes, and says "nothing left" only
when there is none.
The random policy starts from a random rank and, finding nothing, tries once more from 0.

On PostgreSQL, rows that other transactions hold are skipped, never waited for (SKIP LOCKED): a
scan that waited would keep the locks of rows it then rejected, and two such scans deadlock
(they did, in the 64-thread test). So at the very tail of a queue, while the last open
comparisons are held by other requests for a moment, a pick may find nothing: "nothing free
right now".
"""

import secrets
from typing import Any, NamedTuple

from django.contrib.auth.models import User

from apps.batches.queue_order import policy_sql, takes_votes_sql
from apps.judging.queue import backend, policy, statements
from apps.judging.queue.policy import POLICIES, sql_order
from apps.judging.queue.statements import embed
from apps.projects.models import AssignmentPolicy, Project

# The statements, valid on PostgreSQL and on SQLite alike. Their parameters: project,
# annotator, overlap, window (how many rows a bounded probe reads), rank_from, and per probe
# batch and head.


def _open(alias: str) -> str:
    """Open and under the overlap (what the policy's partial index holds, with a free slot),
    and from rank_from on."""
    takes_votes = takes_votes_sql(overlap="%(overlap)s", alias=alias)
    return f"{takes_votes} AND {alias}.rank >= %(rank_from)s"


# The annotator has not judged or skipped comparison c and holds no open lease on it.
NOT_MINE = """NOT EXISTS (SELECT 1 FROM judging_judgment j
                      WHERE j.comparison_id = c.id AND j.annotator_id = %(annotator)s)
      AND NOT EXISTS (SELECT 1 FROM judging_skip s
                      WHERE s.comparison_id = c.id AND s.annotator_id = %(annotator)s)
      AND NOT EXISTS (SELECT 1 FROM judging_assignment a
                      WHERE a.comparison_id = c.id AND a.annotator_id = %(annotator)s
                        AND a.status = 'open')"""

# The project's active batches in priority order, but those where the annotator reached the cap.
ACTIVE_BATCHES = """
    SELECT b.id FROM batches_batch b
    WHERE b.project_id = %(project)s AND b.status = 'active'
      AND (b.annotator_cap IS NULL OR (
            SELECT count(*) FROM judging_judgment j
            WHERE j.annotator_id = %(annotator)s AND j.batch_id = b.id
          ) < b.annotator_cap)
    ORDER BY b.priority DESC, b.id"""


def head_sql(order: str) -> str:
    """Probes 1 and 2: the first `window` open comparisons of `batch`, in the order of policy
    `order`."""
    return f"""SELECT h.id FROM batches_comparison h
    WHERE h.batch_id = %(batch)s AND {_open("h")}{policy_sql(order, "h")}
    ORDER BY {sql_order(order, "h")}
    LIMIT %(window)s"""


# Comparison `head` if the annotator may take it (on PostgreSQL, checked again under its lock).
TAKE_SQL = f"""SELECT c.id FROM batches_comparison c
    WHERE c.id = %(head)s AND {_open("c")}
      AND {NOT_MINE}"""


def head_take_sql(order: str) -> str:
    """Probes 1 and 2 as one statement, for databases other than PostgreSQL: the first comparison
    of the policy's head (head_sql) that the annotator may take (TAKE_SQL's conditions). Where
    writers are serialized nothing is locked or skipped, so the head's rows need not be taken one
    at a time, and the probe costs one statement however much of the head is the annotator's
    own work."""
    return f"""SELECT c.id FROM batches_comparison c
    WHERE c.id IN ({head_sql(order)}) AND {_open("c")}
      AND {NOT_MINE}
    ORDER BY {sql_order(order, "c")}
    LIMIT 1"""


def exact_sql(order: str) -> str:
    """Probe 3: the first comparison of `batch` the annotator may take, however deep it is."""
    return f"""SELECT c.id FROM batches_comparison c
    WHERE c.batch_id = %(batch)s AND {_open("c")}{policy_sql(order, "c")}
      AND {NOT_MINE}
    ORDER BY {sql_order(order, "c")}
    LIMIT 1"""


# Which probe found the comparison (annotate_pick's o_probe).
EXACT, HEAD, BREADTH_HEAD = 0, 1, 2

# annotate_pick's variable for each parameter.
_VARIABLES = {
    "project": "p_project",
    "annotator": "p_annotator",
    "overlap": "p_overlap",
    "window": "p_window",
    "rank_from": "v_from",
    "batch": "v_batch",
    "head": "v_head",
    "prefer": "p_prefer",
}


def plpgsql(sql: str) -> str:
    """A shared statement as PL/pgSQL text: its parameters become the variables of the function
    that embeds it (annotate_pick, or annotate_next: see sql_gold), which use these names."""
    return embed(sql, _VARIABLES)


# The control flow, twice: pick_function (PL/pgSQL, PostgreSQL) and _pick_statements (Python,
# elsewhere). A change to one is a change to the other.


def _branches(sql_for: "dict[str, str]") -> str:
    """IF p_policy = ... THEN <sql> ELSIF ... END IF over every policy."""
    parts = [
        f"{'IF' if not n else 'ELSIF'} p_policy = '{name}' THEN\n{sql}"
        for n, (name, sql) in enumerate(sql_for.items())
    ]
    return "\n".join(parts) + "\nEND IF;"


def _head_loop(order: str, probe: int) -> str:
    return f"""FOR v_head IN {plpgsql(head_sql(order))} LOOP
    {plpgsql(TAKE_SQL)}
    FOR UPDATE SKIP LOCKED INTO o_id;
    IF o_id IS NOT NULL THEN
        o_probe := {probe};
        RETURN;
    END IF;
END LOOP;"""


def pick_function() -> str:
    """annotate_pick; _pick_statements is the same control flow in Python."""
    heads = _branches({name: _head_loop(name, HEAD) for name in POLICIES})
    exact = _branches(
        {
            name: f"{plpgsql(exact_sql(name))}\n    FOR UPDATE OF c SKIP LOCKED INTO o_id;"
            for name in POLICIES
        }
    )
    breadth = _head_loop(AssignmentPolicy.BREADTH_FIRST, BREADTH_HEAD)
    breadth_exact = plpgsql(exact_sql(AssignmentPolicy.BREADTH_FIRST))
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
        FOR v_batch IN {plpgsql(ACTIVE_BATCHES)} LOOP
            {heads}
            IF p_policy <> '{AssignmentPolicy.BREADTH_FIRST.value}' THEN
                {breadth}
            END IF;
            {exact}
            IF o_id IS NULL AND p_policy <> '{AssignmentPolicy.BREADTH_FIRST.value}' THEN
                {breadth_exact}
                FOR UPDATE OF c SKIP LOCKED INTO o_id;
            END IF;
            IF o_id IS NOT NULL THEN
                o_probe := {EXACT};
                RETURN;
            END IF;
        END LOOP;
        EXIT WHEN v_from = 0;
        v_from := 0;
    END LOOP;
END
$fn$;
"""


class Picked(NamedTuple):
    comparison_id: int | None
    probe: int | None  # EXACT, HEAD or BREADTH_HEAD; None when nothing was found


def _pick_statements(params: dict[str, Any], order: str) -> Picked:
    """annotate_pick (pick_function) statement by statement, for databases other than
    PostgreSQL: there writers are serialized, so nothing is locked or skipped."""
    heads = [(HEAD, order)]
    exacts = [order]
    if order != AssignmentPolicy.BREADTH_FIRST:
        heads.append((BREADTH_HEAD, AssignmentPolicy.BREADTH_FIRST))
        exacts.append(AssignmentPolicy.BREADTH_FIRST)

    def ids(sql: str, **more: int) -> list[int]:
        return [row[0] for row in statements.run_all(sql, {**params, **more})]

    while True:
        for batch in ids(ACTIVE_BATCHES):
            for probe, head_order in heads:
                if found := ids(head_take_sql(head_order), batch=batch):
                    return Picked(found[0], probe)
            for exact_order in exacts:
                if found := ids(exact_sql(exact_order), batch=batch):
                    return Picked(found[0], EXACT)
        if params["rank_from"] == 0:
            return Picked(None, None)
        params = {**params, "rank_from": 0}


def rank_start(project: Project) -> int:
    """Where the pick starts: a random rank for the random policy, else the first."""
    return secrets.randbelow(2**31) if project.policy == AssignmentPolicy.RANDOM else 0


def comparison_pick(*, project: Project, annotator: User, rank_from: int) -> Picked:
    """The ordinary comparison this annotator should judge next, by the project's policy, from
    rank `rank_from` (then from 0), and the probe that found it. On PostgreSQL one call of
    annotate_pick, which locks the row for the caller's transaction; elsewhere the same
    statements one by one, each probe's head and take as one (head_take_sql): 2 when the policy's
    head has a row to take (the batches, the head), whatever the annotator's history."""
    params = {
        "project": project.pk,
        "annotator": annotator.pk,
        "overlap": project.overlap,
        "window": policy.WINDOW,
        "rank_from": rank_from,
    }
    if backend.postgresql():
        # In the caller's transaction, with no savepoint of its own.
        comparison_id, probe = backend.fetchone(
            "SELECT o_id, o_probe FROM annotate_pick(%s, %s, %s, %s, %s, %s)",
            [project.pk, annotator.pk, project.policy, project.overlap, rank_from, policy.WINDOW],
        )
        return Picked(comparison_id, probe)
    return _pick_statements(params, AssignmentPolicy(project.policy))
