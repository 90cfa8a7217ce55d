"""next's own steps, written once as shared statements (see statements.py), and annotate_next,
the PL/pgSQL of next.py's PostgreSQL path, which embeds them with the pick (sql_pick), the gold
pick (sql_gold) and the slot take (sql_lease): an open lease, or a new one, in one round trip.
next.py's path on other databases runs the same statements through a cursor.

Their parameters: project, annotator, now, and for a new lease comparison, swap (whether its
candidate b goes left), expires (now plus the project's lease time: computed by the caller, as
databases add intervals each their own way) and guideline_version.
"""

from apps.judging.models import Assignment
from apps.judging.queue.policy import RECLAIM_LIMIT
from apps.judging.queue.sql_gold import GOLD_LOOP, PREFERRED_PLPGSQL
from apps.judging.queue.sql_lease import SLOT_TAKE
from apps.judging.queue.statements import embed

# The annotator's open, unexpired lease in the project: the lowest id, should two requests at
# once have left two. The id alone: most requests find none, and the lease is loaded after.
OPEN_LEASE = """SELECT a.id FROM judging_assignment a
    WHERE a.annotator_id = %(annotator)s AND a.project_id = %(project)s AND a.status = 'open'
      AND a.expires_at > %(now)s
    ORDER BY a.id LIMIT 1"""

# A new lease of comparison c, on the sides `swap` says (false: a left, b right): each column of
# judging_assignment it sets, and the value. A column the model requires (NOT NULL, no default
# in the database) and this leaves out would fail at run time: tests/annotate/test_migrations.py
# checks statements.unset_required_columns() is empty for it.
LEASE_VALUES = {
    "project_id": "%(project)s",
    "comparison_id": "c.id",
    "annotator_id": "%(annotator)s",
    "left_id": "CASE WHEN %(swap)s THEN c.candidate_b_id ELSE c.candidate_a_id END",
    "right_id": "CASE WHEN %(swap)s THEN c.candidate_a_id ELSE c.candidate_b_id END",
    "status": "'open'",
    "created_at": "%(now)s",
    "expires_at": "%(expires)s",
    "guideline_version": "%(guideline_version)s",
}
LEASE_INSERT = f"""INSERT INTO {Assignment._meta.db_table} ({", ".join(LEASE_VALUES)})
    SELECT {", ".join(LEASE_VALUES.values())}
    FROM batches_comparison c WHERE c.id = %(comparison)s
    RETURNING id, left_id, right_id"""


# annotate_next's variable for each parameter.
_VARIABLES = {
    "project": "p_project",
    "annotator": "p_annotator",
    "now": "p_now",
    "comparison": "v_id",
    "swap": "p_swap",
    "expires": "v_expires",
    "guideline_version": "p_guideline_version",
}


def _plpgsql(sql: str) -> str:
    return embed(sql, _VARIABLES)


NEXT_FUNCTION = f"""
CREATE FUNCTION annotate_next(
    p_project bigint, p_annotator bigint, p_policy text, p_overlap integer,
    p_lease_seconds integer, p_now timestamptz, p_blocked boolean, p_gold boolean,
    p_rank_from integer, p_gold_rank_from integer, p_swap boolean, p_window integer,
    p_guideline_version integer, p_prefer bigint,
    OUT outcome text, OUT o_assignment bigint, OUT o_comparison bigint, OUT o_left bigint,
    OUT o_right bigint, OUT o_created timestamptz, OUT o_expires timestamptz,
    OUT o_prompt bigint, OUT o_prompt_external text, OUT o_prompt_content jsonb,
    OUT o_left_external text, OUT o_left_text text, OUT o_right_external text,
    OUT o_right_text text
) LANGUAGE plpgsql AS $fn$
-- outcome: 'open' (the annotator's open lease), 'new' (a new lease), 'blocked' (a cap or the
-- gold rule stops them; the caller says why) or 'none' (nothing left for them). With a lease,
-- the other columns are the lease and what it shows, so that the caller need not load them.
DECLARE
    v_id bigint;
    v_batch bigint;
    v_from integer;
    v_expires timestamptz;
BEGIN
    {_plpgsql(OPEN_LEASE)}
    INTO o_assignment;
    IF o_assignment IS NOT NULL THEN
        outcome := 'open';
    ELSIF p_blocked THEN
        outcome := 'blocked';
        RETURN;
    ELSE
        PERFORM annotate_reclaim(p_project, p_now, {RECLAIM_LIMIT});
        IF p_gold THEN
            {GOLD_LOOP}
        END IF;
        IF v_id IS NULL AND p_prefer IS NOT NULL THEN
            -- The comparison the page prefetched (the caller drew no gold then: the prefetch
            -- drew it), if the annotator may still take it (sql_gold.PREFERRED_SQL).
            {PREFERRED_PLPGSQL}
        END IF;
        IF v_id IS NULL THEN
            SELECT o_id INTO v_id FROM annotate_pick(
                p_project, p_annotator, p_policy, p_overlap, p_rank_from, p_window);
        END IF;
        IF v_id IS NULL THEN
            outcome := 'none';
            RETURN;
        END IF;
        v_expires := p_now + make_interval(secs => p_lease_seconds);
        {_plpgsql(LEASE_INSERT)}
        INTO o_assignment, o_left, o_right;
        {_plpgsql(SLOT_TAKE)};
        outcome := 'new';
    END IF;
    SELECT x.comparison_id, x.left_id, x.right_id, x.created_at, x.expires_at, pr.id,
           pr.external_id, pr.content, l.external_id, l.text, r.external_id, r.text
    INTO o_comparison, o_left, o_right, o_created, o_expires, o_prompt, o_prompt_external,
         o_prompt_content, o_left_external, o_left_text, o_right_external, o_right_text
    FROM judging_assignment x
    JOIN batches_comparison c ON c.id = x.comparison_id
    JOIN batches_prompt pr ON pr.id = c.prompt_id
    JOIN batches_candidate l ON l.id = x.left_id
    JOIN batches_candidate r ON r.id = x.right_id
    WHERE x.id = o_assignment;
END
$fn$;
"""
