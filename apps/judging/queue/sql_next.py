"""annotate_next, the PL/pgSQL of next.py's PostgreSQL path: an open lease, or a new one, in one
round trip."""

from apps.judging.queue.policy import RECLAIM_LIMIT
from apps.judging.queue.sql_gold import GOLD_LOOP, PREFERRED_PLPGSQL

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
    v_gold boolean := false;
    v_a bigint;
    v_b bigint;
BEGIN
    SELECT a.id INTO o_assignment FROM judging_assignment a
    WHERE a.annotator_id = p_annotator AND a.project_id = p_project AND a.status = 'open'
      AND a.expires_at > p_now
    ORDER BY a.id LIMIT 1;
    IF o_assignment IS NOT NULL THEN
        outcome := 'open';
    ELSIF p_blocked THEN
        outcome := 'blocked';
        RETURN;
    ELSE
        PERFORM annotate_reclaim(p_project, p_now, {RECLAIM_LIMIT});
        IF p_gold THEN
            {GOLD_LOOP}
            v_gold := v_id IS NOT NULL;
        END IF;
        IF v_id IS NULL AND p_prefer IS NOT NULL THEN
            -- The comparison the page prefetched (the caller drew no gold then: the prefetch
            -- drew it), if the annotator may still take it (sql_gold.PREFERRED_SQL).
            {PREFERRED_PLPGSQL}
            v_gold := coalesce(v_gold, false);
        END IF;
        IF v_id IS NULL THEN
            SELECT o_id INTO v_id FROM annotate_pick(
                p_project, p_annotator, p_policy, p_overlap, p_rank_from, p_window);
        END IF;
        IF v_id IS NULL THEN
            outcome := 'none';
            RETURN;
        END IF;
        SELECT c.candidate_a_id, c.candidate_b_id INTO v_a, v_b
        FROM batches_comparison c WHERE c.id = v_id;
        IF p_swap THEN
            SELECT v_b, v_a INTO v_a, v_b;
        END IF;
        INSERT INTO judging_assignment
            (project_id, comparison_id, annotator_id, left_id, right_id, status, created_at,
             expires_at, guideline_version)
        VALUES (p_project, v_id, p_annotator, v_a, v_b, 'open', p_now,
                p_now + make_interval(secs => p_lease_seconds), p_guideline_version)
        RETURNING id INTO o_assignment;
        IF NOT v_gold THEN  -- gold items have no overlap: their leases take no slot
            UPDATE batches_comparison SET lease_count = lease_count + 1 WHERE id = v_id;
        END IF;
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
