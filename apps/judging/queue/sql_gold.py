"""The gold pick and the prefetched comparison, beside the pick (sql_pick): written once, as SQL
statements with named parameters, and run two ways with the same control flow:

- on PostgreSQL, embedded in annotate_next (sql_next, through gold_loop and plpgsql), with
  `FOR UPDATE SKIP LOCKED` on the prefetched comparison: inside next's one round trip;
- statement by statement (gold_pick, preferred): next's path on other databases, and the
  peek's gold item on every database (the peek takes nothing, so it needs no function).
"""

import secrets
from typing import Any

from django.contrib.auth.models import User

from apps.batches.queue_order import takes_votes_sql
from apps.judging.queue import statements
from apps.judging.queue.results import Preference
from apps.judging.queue.sql_pick import ACTIVE_BATCHES, NOT_MINE, plpgsql
from apps.projects.models import Project

# Their parameters: project, annotator, overlap, prefer (the prefetched comparison), rank_from
# and, per gold probe, batch.

# Comparison c was never given to the annotator, in a lease open or closed: a gold item is
# shown to each annotator once.
NEVER_GIVEN = """NOT EXISTS (SELECT 1 FROM judging_assignment a
                      WHERE a.comparison_id = c.id AND a.annotator_id = %(annotator)s)"""

# Gold items: the first of `batch`, from rank_from on, never given to the annotator. No lock:
# gold items have no overlap, so any number of annotators may hold one at once.
GOLD_SQL = f"""SELECT c.id FROM batches_comparison c
    WHERE c.batch_id = %(batch)s AND c.is_gold AND c.rank >= %(rank_from)s
      AND {NEVER_GIVEN}
    ORDER BY c.rank
    LIMIT 1"""

# The comparison the page prefetched (comparison_peek), if the annotator may still take it: a
# pair of an active batch of the project, and either a gold item never given to them or an
# ordinary comparison a new lease may take and not theirs already.
PREFERRED_SQL = f"""SELECT c.id FROM batches_comparison c
    WHERE c.id = %(prefer)s AND c.project_id = %(project)s AND c.candidate_ids IS NULL
      AND EXISTS (SELECT 1 FROM batches_batch b
                  WHERE b.id = c.batch_id AND b.status = 'active')
      AND CASE WHEN c.is_gold THEN {NEVER_GIVEN}
          ELSE {takes_votes_sql(overlap="%(overlap)s", alias="c")}
               AND {NOT_MINE}
          END"""


# The control flow, twice: gold_loop (PL/pgSQL, in annotate_next) and gold_pick (Python). A
# change to one is a change to the other.

GOLD_LOOP = f"""v_from := p_gold_rank_from;
LOOP
    FOR v_batch IN {plpgsql(ACTIVE_BATCHES)} LOOP
        {plpgsql(GOLD_SQL)}
        INTO v_id;
        EXIT WHEN v_id IS NOT NULL;
    END LOOP;
    EXIT WHEN v_id IS NOT NULL OR v_from = 0;
    v_from := 0;
END LOOP;"""

# annotate_next's statement for the prefetched comparison (into v_id).
PREFERRED_PLPGSQL = f"""{plpgsql(PREFERRED_SQL)}
    FOR UPDATE OF c SKIP LOCKED INTO v_id;"""


def draw() -> float:
    return secrets.randbelow(1_000_000) / 1_000_000


def gold_start() -> int:
    """Where the gold pick starts: a random point of the gold items' order."""
    return secrets.randbelow(2**31)


def gold_pick(*, project: Project, annotator: User) -> int | None:
    """A gold item this annotator has never been given, from a random point of their order,
    or None: GOLD_LOOP statement by statement, the active batches, then one probe per batch
    until one finds an item (again from rank 0 when none does)."""
    params: dict[str, Any] = {
        "project": project.pk,
        "annotator": annotator.pk,
        "rank_from": gold_start(),
    }

    def ids(sql: str, **more: int) -> list[int]:
        return [row[0] for row in statements.run_all(sql, {**params, **more})]

    while True:
        for batch in ids(ACTIVE_BATCHES):
            if found := ids(GOLD_SQL, batch=batch):
                return found[0]
        if params["rank_from"] == 0:
            return None
        params = {**params, "rank_from": 0}


def preferred(*, project: Project, annotator: User, prefer: Preference) -> int | None:
    """The prefetched comparison, if the annotator may still take it (PREFERRED_SQL; on
    databases other than PostgreSQL, where nothing is locked). 1 query."""
    row = statements.run(
        PREFERRED_SQL,
        {
            "project": project.pk,
            "annotator": annotator.pk,
            "overlap": project.overlap,
            "prefer": prefer.comparison_id,
        },
    )
    return None if row is None else int(row[0])
