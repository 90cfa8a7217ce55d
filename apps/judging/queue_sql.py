"""The queue's PostgreSQL functions: the pick, the reclaim, next and submit.

Next and submit, what an annotator waits on, were a dozen ORM statements per cycle, each a round
trip built and parsed by Python, plus BEGIN and COMMIT. As functions, each is one statement in
autocommit: one round trip and its own transaction. PL/pgSQL runs every statement inside on a
fresh snapshot under READ COMMITTED, as a Django transaction's statements were, and the locks
are taken in one order everywhere (an assignment row, then its comparison), so that no two
transactions wait on each other in a cycle. services.py keeps the same rules in the ORM for
SQLite.

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

from apps.projects.models import AssignmentPolicy

# How many rows of a batch's head a bounded probe reads before it gives up.
WINDOW = 256

# How many expired leases one reclaim returns to the pool.
RECLAIM_LIMIT = 500

FUNCTION_NAMES = (
    "annotate_pick",
    "annotate_reclaim",
    "annotate_next",
    "annotate_fits",
    "annotate_submit",
)


def _order(policy: str, alias: str) -> str:
    filled = f"({alias}.judgment_count + {alias}.lease_count)"
    return {
        AssignmentPolicy.BREADTH_FIRST: f"{filled}, {alias}.rank",
        AssignmentPolicy.DEPTH_FIRST: f"{filled} DESC, {alias}.rank",
        AssignmentPolicy.UNCERTAIN_FIRST: f"{alias}.split, {filled}, {alias}.rank",
        AssignmentPolicy.RANDOM: f"{alias}.rank",
    }[AssignmentPolicy(policy)]


POLICIES = [policy.value for policy in AssignmentPolicy]

# Open and under the overlap; what the policy's partial index holds, and from v_from on.
_OPEN = """NOT {a}.complete AND NOT {a}.is_gold
      AND ({a}.judgment_count + {a}.lease_count) < p_overlap AND {a}.rank >= v_from"""

# The annotator has not judged or skipped it and holds no open lease on it.
_NOT_MINE = """NOT EXISTS (SELECT 1 FROM judging_judgment j
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
    ORDER BY {_order(policy, "h")}
    LIMIT p_window"""


# Takes comparison v_head if the annotator may: its conditions are checked again under the lock.
TAKE_SQL = f"""SELECT c.id INTO o_id FROM batches_comparison c
    WHERE c.id = v_head AND {_OPEN.format(a="c")}
      AND {_NOT_MINE}
    FOR UPDATE SKIP LOCKED;"""


def exact_sql(policy: str) -> str:
    """The first comparison of batch `v_batch` the annotator may take, however deep it is."""
    return f"""SELECT c.id INTO o_id FROM batches_comparison c
    WHERE c.batch_id = v_batch AND {_OPEN.format(a="c")}
      AND {_NOT_MINE}
    ORDER BY {_order(policy, "c")}
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


def _pick_function() -> str:
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


_RECLAIM_FUNCTION = """
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


_NEXT_FUNCTION = f"""
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
            v_from := p_gold_rank_from;
            LOOP
                {GOLD_PICK_SQL}
                EXIT WHEN v_id IS NOT NULL OR v_from = 0;
                v_from := 0;
            END LOOP;
            v_gold := v_id IS NOT NULL;
        END IF;
        IF v_id IS NULL AND p_prefer IS NOT NULL THEN
            -- The comparison the page prefetched (the caller drew no gold then: the prefetch
            -- drew it), if the annotator may still take it: an ordinary one under its overlap,
            -- or a gold item never given to them.
            SELECT c.id, c.is_gold INTO v_id, v_gold FROM batches_comparison c
            WHERE c.id = p_prefer AND c.project_id = p_project AND c.candidate_ids IS NULL
              AND EXISTS (SELECT 1 FROM batches_batch b
                          WHERE b.id = c.batch_id AND b.status = 'active')
              AND CASE WHEN c.is_gold THEN
                    NOT EXISTS (SELECT 1 FROM judging_assignment a
                                WHERE a.comparison_id = c.id AND a.annotator_id = p_annotator)
                  ELSE
                    NOT c.complete AND (c.judgment_count + c.lease_count) < p_overlap
                    AND {_NOT_MINE}
                  END
            FOR UPDATE OF c SKIP LOCKED;
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


_FITS_FUNCTION = """
CREATE FUNCTION annotate_fits(
    p_choice text, p_strength integer, p_graded boolean, p_allow_tie boolean,
    p_allow_both_bad boolean
) RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
-- Whether one answer (overall or a criterion's) fits the scheme: answers._pick_fits.
SELECT coalesce(CASE
    WHEN p_choice = 'both_bad' THEN p_allow_both_bad AND p_strength IS NULL
    WHEN p_graded THEN p_strength IS NOT NULL AND p_strength BETWEEN -3 AND 3
    ELSE p_strength IS NULL
         AND (p_choice IN ('left', 'right') OR (p_choice = 'tie' AND p_allow_tie))
END, false)
$fn$;
"""


_SUBMIT_FUNCTION = """
CREATE FUNCTION annotate_submit(
    p_assignment bigint, p_annotator bigint, p_choice text, p_strength integer,
    p_criteria jsonb, p_flags jsonb, p_rationale text, p_key text, p_duration integer,
    p_now timestamptz,
    OUT outcome text, OUT o_judgment bigint, OUT o_comparison bigint, OUT o_batch bigint,
    OUT o_left bigint, OUT o_right bigint, OUT o_chosen bigint, OUT o_chosen_external text,
    OUT o_gold_correct boolean, OUT o_allowed text, OUT o_strength integer,
    OUT o_criteria jsonb, OUT o_guideline_version integer, OUT o_left_is_a boolean
) LANGUAGE plpgsql AS $fn$
-- The answer comes on the screen's terms (p_choice; p_strength < 0 favours the left response;
-- p_criteria {"<name>": {"choice", "strength"}}), its shape already checked (answers.py).
-- outcome: 'created'; 'repeat' (a retry with the same idempotency key: o_judgment is the
-- earlier judgment); or why nothing was stored: one of answers.MESSAGES' codes (o_allowed is
-- its detail), 'not_found', 'judged' (the assignment was judged before), 'skipped',
-- 'late_full' (a reclaimed lease and no free slot left), 'already_judged' (this annotator
-- judged the comparison), 'project_cap' / 'batch_cap' (o_allowed: the cap; the lease is
-- closed and its slot freed), or 'inactive' / 'not_member' / 'stopped' (the annotator may no
-- longer act here; the lease is closed and its slot freed).
DECLARE
    a record;
    c record;
    s record;
    v_holds boolean;
    v_option text;
    v_key text;
    v_count integer;
    v_project_cap integer;
    v_batch_cap integer;
    v_graded boolean;
    v_names text[];
    v_least integer;
    v_flip integer;
BEGIN
    SELECT x.id, x.status, x.project_id, x.comparison_id, x.left_id, x.right_id,
           x.guideline_version, p.overlap, p.allow_tie, p.allow_both_bad, p.scheme,
           p.criteria, p.flags, p.rationale, p.rationale_min_length,
           l.external_id AS left_external, r.external_id AS right_external,
           p.gold_min_accuracy, p.gold_min_answers
    INTO a
    FROM judging_assignment x
    JOIN projects_project p ON p.id = x.project_id
    JOIN batches_candidate l ON l.id = x.left_id
    JOIN batches_candidate r ON r.id = x.right_id
    WHERE x.id = p_assignment AND x.annotator_id = p_annotator
    FOR UPDATE OF x;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    -- A lease taken before its annotator was deactivated, removed from the project or stopped
    -- by the gold rule (services._standing_problem, in its order): refused, and an open lease
    -- closed and its slot freed (the comparison's lock after the assignment's, the queue's
    -- order). For 'stopped', o_allowed is "correct answered minimum min_answers". Read in a
    -- statement of its own, after the lock: the lock's statement would see the account and the
    -- membership as they were before it waited (a deactivation holding the lease's row).
    IF a.status IN ('open', 'expired') THEN
        SELECT u.is_active, m.id AS member_id, m.gold_answered, m.gold_correct INTO s
        FROM auth_user u
        LEFT JOIN projects_membership m ON m.project_id = a.project_id AND m.user_id = u.id
        WHERE u.id = p_annotator;
        IF NOT s.is_active THEN
            outcome := 'inactive';
        ELSIF s.member_id IS NULL THEN
            outcome := 'not_member';
        ELSIF a.gold_min_accuracy > 0 AND s.gold_answered > 0
              AND s.gold_answered >= a.gold_min_answers
              AND s.gold_correct::float8 / s.gold_answered < a.gold_min_accuracy THEN
            outcome := 'stopped';
            o_allowed := concat_ws(' ', s.gold_correct, s.gold_answered, a.gold_min_accuracy,
                                   a.gold_min_answers);
        END IF;
        IF outcome IS NOT NULL THEN
            IF a.status = 'open' THEN
                UPDATE judging_assignment SET status = 'expired', closed_at = p_now
                WHERE id = a.id;
                UPDATE batches_comparison SET lease_count = lease_count - 1
                WHERE id = a.comparison_id AND NOT is_gold;
            END IF;
            RETURN;
        END IF;
    END IF;
    -- The project's rules for the answer, in answers.answer_problem's order. A ranking never
    -- comes here (services.judgment_submit takes it through the ORM).
    IF a.scheme = 'listwise' THEN
        outcome := 'needs_ranking';
        RETURN;
    END IF;
    v_graded := a.scheme = 'graded';
    IF NOT (p_choice = 'both_bad' AND a.allow_both_bad) THEN
        IF v_graded AND p_strength IS NULL THEN
            outcome := 'needs_strength';
            RETURN;
        ELSIF NOT v_graded AND p_strength IS NOT NULL THEN
            outcome := 'no_strength';
            RETURN;
        END IF;
    END IF;
    IF NOT annotate_fits(p_choice, p_strength, v_graded, a.allow_tie, a.allow_both_bad) THEN
        outcome := 'bad_choice';
        o_allowed := concat_ws(', ', 'left', 'right', CASE WHEN a.allow_tie THEN 'tie' END,
                               CASE WHEN a.allow_both_bad THEN 'both_bad' END);
        RETURN;
    END IF;
    -- Criteria and flags, skipped at no cost when neither the project nor the answer has any.
    IF p_criteria <> '{}'::jsonb OR a.criteria <> '[]'::jsonb THEN
        SELECT coalesce(array_agg(e.value->>'name' ORDER BY e.n), '{}') INTO v_names
        FROM jsonb_array_elements(a.criteria) WITH ORDINALITY AS e(value, n);
        IF p_criteria <> '{}'::jsonb AND cardinality(v_names) = 0 THEN
            outcome := 'no_criteria';
            RETURN;
        END IF;
        IF (SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM jsonb_object_keys(p_criteria) k)
           <> (SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM unnest(v_names) k) THEN
            outcome := 'bad_criteria';
            o_allowed := array_to_string(v_names, ', ');
            RETURN;
        END IF;
        SELECT u.name INTO o_allowed FROM unnest(v_names) WITH ORDINALITY AS u(name, n)
        WHERE NOT annotate_fits(p_criteria->u.name->>'choice',
                                (p_criteria->u.name->>'strength')::integer,
                                v_graded, a.allow_tie, a.allow_both_bad)
        ORDER BY u.n LIMIT 1;
        IF o_allowed IS NOT NULL THEN
            outcome := 'bad_criterion_answer';
            RETURN;
        END IF;
    END IF;
    IF p_flags <> '[]'::jsonb THEN
        IF jsonb_array_length(a.flags) = 0 THEN
            outcome := 'no_flags';
            RETURN;
        END IF;
        IF NOT p_flags <@ a.flags THEN
            outcome := 'bad_flags';
            SELECT string_agg(f.name, ', ' ORDER BY f.n) INTO o_allowed
            FROM jsonb_array_elements_text(a.flags) WITH ORDINALITY AS f(name, n);
            RETURN;
        END IF;
    END IF;
    IF a.rationale = 'off' AND p_rationale <> '' THEN
        outcome := 'no_rationale';
        RETURN;
    END IF;
    v_least := CASE WHEN a.rationale = 'required' THEN greatest(a.rationale_min_length, 1)
                    ELSE a.rationale_min_length END;
    IF (p_rationale <> '' OR a.rationale = 'required') AND char_length(p_rationale) < v_least
    THEN
        outcome := 'short_rationale';
        o_allowed := v_least::text;
        RETURN;
    END IF;
    IF a.status = 'submitted' THEN
        SELECT j.id, j.idempotency_key INTO o_judgment, v_key
        FROM judging_judgment j WHERE j.assignment_id = a.id;
        outcome := CASE WHEN p_key <> '' AND v_key = p_key THEN 'repeat' ELSE 'judged' END;
        RETURN;
    END IF;
    IF a.status IN ('skipped', 'undone') THEN
        outcome := a.status;
        RETURN;
    END IF;
    SELECT cc.id, cc.batch_id, cc.candidate_a_id, cc.is_gold, cc.gold_answer,
           cc.judgment_count, cc.lease_count
    INTO c
    FROM batches_comparison cc WHERE cc.id = a.comparison_id
    FOR UPDATE;
    -- An open lease holds a slot, even past its time, until a reclaim takes it back; gold
    -- leases never hold one.
    v_holds := a.status = 'open' AND NOT c.is_gold;
    IF a.status <> 'open' THEN
        -- A reclaimed lease: the judgment goes only into a free slot, never past the overlap.
        IF NOT c.is_gold AND c.judgment_count + c.lease_count >= a.overlap THEN
            outcome := 'late_full';
            RETURN;
        END IF;
        IF EXISTS (SELECT 1 FROM judging_judgment j
                   WHERE j.comparison_id = c.id AND j.annotator_id = p_annotator) THEN
            outcome := 'already_judged';
            RETURN;
        END IF;
    END IF;
    -- Caps: the member's row is locked (after the assignment and the comparison, the order
    -- everywhere), so that two leases of one annotator, taken at once, cannot both pass a cap.
    SELECT m.judgment_count, p.annotator_cap, b.annotator_cap
    INTO v_count, v_project_cap, v_batch_cap
    FROM projects_membership m
    JOIN projects_project p ON p.id = m.project_id
    JOIN batches_batch b ON b.id = c.batch_id
    WHERE m.project_id = a.project_id AND m.user_id = p_annotator
    FOR UPDATE OF m;
    IF v_project_cap IS NOT NULL AND v_count >= v_project_cap THEN
        outcome := 'project_cap';
        o_allowed := v_project_cap::text;
    ELSIF v_batch_cap IS NOT NULL AND (
        SELECT count(*) FROM (
            SELECT 1 FROM judging_judgment j
            WHERE j.annotator_id = p_annotator AND j.batch_id = c.batch_id
            LIMIT v_batch_cap
        ) done
    ) >= v_batch_cap THEN
        outcome := 'batch_cap';
        o_allowed := v_batch_cap::text;
    END IF;
    IF outcome IS NOT NULL THEN
        IF a.status = 'open' THEN
            UPDATE judging_assignment SET status = 'expired', closed_at = p_now WHERE id = a.id;
            UPDATE batches_comparison SET lease_count = lease_count - v_holds::integer
            WHERE id = c.id;
        END IF;
        RETURN;
    END IF;
    o_comparison := c.id;
    o_batch := c.batch_id;
    o_left := a.left_id;
    o_right := a.right_id;
    o_chosen := CASE p_choice WHEN 'left' THEN a.left_id WHEN 'right' THEN a.right_id END;
    o_chosen_external := CASE p_choice WHEN 'left' THEN a.left_external
                                       WHEN 'right' THEN a.right_external END;
    v_option := CASE WHEN o_chosen IS NULL THEN p_choice
                     WHEN o_chosen = c.candidate_a_id THEN 'a' ELSE 'b' END;
    o_gold_correct := CASE WHEN c.is_gold THEN v_option = c.gold_answer END;
    -- Stored oriented to the candidates: a strength > 0 favours candidate A.
    o_left_is_a := a.left_id = c.candidate_a_id;
    v_flip := CASE WHEN o_left_is_a THEN -1 ELSE 1 END;
    o_strength := p_strength * v_flip;
    o_criteria := '{}'::jsonb;
    IF p_criteria <> '{}'::jsonb THEN
    SELECT coalesce(jsonb_object_agg(e.key, jsonb_build_object(
               'option', CASE WHEN e.value->>'choice' IN ('left', 'right') THEN
                                  CASE WHEN (e.value->>'choice' = 'left') = (v_flip = -1)
                                       THEN 'a' ELSE 'b' END
                              ELSE e.value->>'choice' END,
               'strength', (e.value->>'strength')::integer * v_flip)), '{}'::jsonb)
    INTO o_criteria FROM jsonb_each(p_criteria) e;
    END IF;
    o_guideline_version := a.guideline_version;
    INSERT INTO judging_judgment
        (comparison_id, batch_id, annotator_id, assignment_id, choice, left_id, right_id,
         chosen_id, strength, criteria, flags, guideline_version, rationale, duration_ms,
         idempotency_key, gold_correct, created_at)
    VALUES (c.id, c.batch_id, p_annotator, a.id, p_choice, a.left_id, a.right_id, o_chosen,
            o_strength, o_criteria, p_flags, a.guideline_version, p_rationale, p_duration,
            p_key, o_gold_correct, p_now)
    ON CONFLICT (comparison_id, annotator_id) DO NOTHING
    RETURNING id INTO o_judgment;
    IF o_judgment IS NULL THEN
        outcome := 'already_judged';
        RETURN;
    END IF;
    UPDATE judging_assignment SET status = 'submitted', closed_at = p_now WHERE id = a.id;
    UPDATE batches_comparison SET
        judgment_count = judgment_count + 1,
        votes_a = votes_a + (v_option = 'a')::integer,
        votes_b = votes_b + (v_option = 'b')::integer,
        votes_tie = votes_tie + (v_option = 'tie')::integer,
        votes_both_bad = votes_both_bad + (v_option = 'both_bad')::integer,
        split = abs(votes_a + (v_option = 'a')::integer - votes_b - (v_option = 'b')::integer),
        -- A fresh rank at each new level: see services._counts_after_vote.
        rank = floor(random() * 2147483648)::integer,
        lease_count = lease_count - v_holds::integer,
        complete = CASE WHEN is_gold THEN complete ELSE judgment_count + 1 >= a.overlap END
    WHERE id = c.id;
    UPDATE projects_membership SET
        judgment_count = judgment_count + 1,
        gold_answered = gold_answered + (o_gold_correct IS NOT NULL)::integer,
        gold_correct = gold_correct + coalesce(o_gold_correct, false)::integer
    WHERE project_id = a.project_id AND user_id = p_annotator;
    outcome := 'created';
END
$fn$;
"""


def functions_sql() -> str:
    """The DDL that (re)creates the queue's functions: dropped first, so that a signature may
    change, in one transaction with the creation."""
    drops = "".join(f"DROP FUNCTION IF EXISTS {name};\n" for name in reversed(FUNCTION_NAMES))
    return drops + "".join(
        (_pick_function(), _RECLAIM_FUNCTION, _NEXT_FUNCTION, _FITS_FUNCTION, _SUBMIT_FUNCTION)
    )
