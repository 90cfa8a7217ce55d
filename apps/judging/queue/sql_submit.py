"""annotate_submit and annotate_fits, the PL/pgSQL of submit.py's PostgreSQL path: the same
rules as the ORM path, in one round trip. The rules themselves are not written here:

- the answer's checks are answer_rules' table (ANSWER_RULES, PICK_FITS), rendered to SQL;
- the standing check, the late-submission rule, the caps, the judgment's INSERT (with what it
  derives: the winner, gold_correct), closing a lease and the counts are sql_submit_steps' and
  sql_lease's statements, embedded here, which the other path runs through a cursor (or, for
  the standing, evaluates as the same rule table in Python).

What is still written twice, here and in submit.py, is the order of the steps: the lock, the
repeat / judged / skipped outcomes of a lease no longer open, and the winner's imported id."""

from apps.judging.answer_rules import PICK_FITS, answer_problem_sql
from apps.judging.queue.sql_lease import LEASE_CLOSE, SLOT_FREE
from apps.judging.queue.sql_submit_steps import (
    CAP_REFUSAL,
    COMPARISON_VOTE,
    JUDGMENT_INSERT,
    JUDGMENT_RETURNING,
    LATE_REFUSAL,
    MEMBER_LOCK,
    MEMBER_VOTE,
    STANDING_REFUSAL,
    perform,
    plpgsql,
)
from apps.projects.rules import case_sql

# annotate_fits' parameter for each of PICK_FITS' terms.
_FITS_PARAMETERS = {
    "choice": "p_choice",
    "strength": "p_strength",
    "graded": "p_graded",
    "allow_tie": "p_allow_tie",
    "allow_both_bad": "p_allow_both_bad",
}
FITS_FUNCTION = f"""
CREATE FUNCTION annotate_fits(
    p_choice text, p_strength integer, p_graded boolean, p_allow_tie boolean,
    p_allow_both_bad boolean
) RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
-- Whether one answer (overall or a criterion's) fits the scheme: answer_rules.PICK_FITS.
SELECT {case_sql(PICK_FITS, _FITS_PARAMETERS)}
$fn$;
"""


_SUBMIT_TEMPLATE = """
CREATE FUNCTION annotate_submit(
    p_assignment bigint, p_annotator bigint, p_choice text, p_strength integer,
    p_criteria jsonb, p_stored jsonb, p_flags jsonb, p_rationale text, p_key text,
    p_duration integer, p_now timestamptz, p_member boolean,
    OUT outcome text, OUT o_judgment bigint, OUT o_comparison bigint, OUT o_batch bigint,
    OUT o_left bigint, OUT o_right bigint, OUT o_chosen bigint, OUT o_chosen_external text,
    OUT o_gold_correct boolean, OUT o_allowed text, OUT o_strength integer,
    OUT o_criteria jsonb, OUT o_guideline_version integer, OUT o_left_is_a boolean,
    OUT o_repeat_rate double precision, OUT o_member jsonb
) LANGUAGE plpgsql AS $fn$
-- The answer comes on the screen's terms (p_choice; p_strength < 0 favours the left response;
-- p_criteria {"<name>": {"choice", "strength"}}), its shape already checked (answers.py), and
-- as stored for either side (p_stored: answers.stored_sides).
-- outcome: 'created'; 'repeat' (a retry with the same idempotency key: o_judgment is the
-- earlier judgment); or why nothing was stored: one of answers.MESSAGES' codes (o_allowed is
-- its detail), 'not_found', 'judged' (the assignment was judged before), 'skipped',
-- 'late_full' (a reclaimed lease, and no free slot left or the lead at the stop margin),
-- 'already_judged' (this annotator judged the comparison), 'project_cap' / 'batch_cap'
-- (o_allowed: the cap; the lease is closed and its slot freed), or 'inactive' / 'not_member' /
-- 'stopped' (the annotator may no longer act here; the lease is closed and its slot freed).
-- With p_member, a created judgment's o_member is [membership, project] as to_jsonb rows, read
-- after the member's counts took the judgment: what a submit that asks for the next lease
-- needs (assignment_next_after), without a round trip of its own.
DECLARE
    a record;
    c record;
    v_gold_correct integer;
    v_gold_answered integer;
    v_option text;
    v_key text;
    v_stored jsonb;
BEGIN
    SELECT x.id, x.status, x.project_id, x.comparison_id, x.left_id, x.right_id,
           x.guideline_version, p.overlap, p.stop_margin, p.allow_tie, p.allow_both_bad, p.scheme,
           p.criteria, p.flags, p.rationale, p.rationale_min_length,
           l.external_id AS left_external, r.external_id AS right_external,
           p.gold_min_accuracy, p.gold_min_answers, p.annotator_cap AS project_cap,
           p.repeat_rate
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
    -- by the gold rule (sql_submit_steps.STANDING_REFUSAL): refused, and an open lease closed
    -- and its slot freed (sql_lease; the comparison's lock after the assignment's, the queue's
    -- order). For 'stopped', o_allowed is "correct answered minimum min_answers". Read in a
    -- statement of its own, after the lock: the lock's statement would see the account and the
    -- membership as they were before it waited (a deactivation holding the lease's row).
    IF a.status IN ('open', 'expired') THEN
        __STANDING_REFUSAL__
        INTO outcome, v_gold_correct, v_gold_answered;
        IF outcome IS NOT NULL THEN
            IF outcome = 'stopped' THEN
                o_allowed := concat_ws(' ', v_gold_correct, v_gold_answered,
                                       a.gold_min_accuracy, a.gold_min_answers);
            END IF;
            IF a.status = 'open' THEN
                __LEASE_EXPIRE__;
                __SLOT_FREE__;
            END IF;
            RETURN;
        END IF;
    END IF;
    -- The project's rules for the answer (answer_rules.ANSWER_RULES), the first it breaks. A
    -- ranking never comes here (submit.judgment_submit takes it through the ORM).
    outcome := __ANSWER_PROBLEM__;
    IF outcome IS NOT NULL THEN
        o_allowed := __ANSWER_DETAIL__;
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
           cc.judgment_count, cc.lease_count, bb.annotator_cap AS batch_cap
    INTO c
    FROM batches_comparison cc JOIN batches_batch bb ON bb.id = cc.batch_id
    WHERE cc.id = a.comparison_id
    FOR UPDATE OF cc;
    IF a.status <> 'open' THEN
        -- A reclaimed lease (sql_submit_steps.LATE_REFUSAL).
        __LATE_REFUSAL__
        INTO outcome;
        IF outcome IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    -- The caps (sql_submit_steps.CAP_REFUSAL), the member's row locked first.
    __CAP_REFUSAL__
    INTO outcome;
    IF outcome IS NOT NULL THEN
        o_allowed := (CASE outcome WHEN 'project_cap' THEN a.project_cap
                                   ELSE c.batch_cap END)::text;
        IF a.status = 'open' THEN
            __LEASE_EXPIRE__;
            __SLOT_FREE__;
        END IF;
        RETURN;
    END IF;
    o_comparison := c.id;
    o_batch := c.batch_id;
    o_left := a.left_id;
    o_right := a.right_id;
    -- Stored oriented to the candidates (a strength > 0 favours candidate A): answers.stored,
    -- computed for either side (p_stored), picked by the lease's side.
    o_left_is_a := a.left_id = c.candidate_a_id;
    v_stored := p_stored->(o_left_is_a::text);
    v_option := v_stored->>'option';
    o_strength := (v_stored->>'strength')::integer;
    o_criteria := v_stored->'criteria';
    o_guideline_version := a.guideline_version;
    -- The project's consistency-probe rate (apps.judging.probes): 0 spares the caller a query.
    o_repeat_rate := a.repeat_rate;
    -- The judgment, with its derived columns (sql_submit_steps.JUDGMENT_INSERT).
    __JUDGMENT_INSERT__
    ON CONFLICT (comparison_id, annotator_id) DO NOTHING
    __JUDGMENT_RETURNING__ INTO o_judgment, o_chosen, o_gold_correct;
    IF o_judgment IS NULL THEN
        outcome := 'already_judged';
        RETURN;
    END IF;
    o_chosen_external := CASE o_chosen WHEN a.left_id THEN a.left_external
                                       WHEN a.right_id THEN a.right_external END;
    __LEASE_SUBMIT__;
    __COMPARISON_VOTE__;
    __MEMBER_VOTE__;
    outcome := 'created';
    IF p_member THEN
        SELECT jsonb_build_array(to_jsonb(m), to_jsonb(p)) INTO o_member
        FROM projects_membership m JOIN projects_project p ON p.id = m.project_id
        WHERE m.project_id = a.project_id AND m.user_id = p_annotator;
    END IF;
END
$fn$;
"""

# annotate_submit's expression for each of answer_rules.ANSWER_TERMS.
_ANSWER_TERMS = {
    "choice": "p_choice",
    "strength": "p_strength",
    "ranked": "false",
    "criteria": "p_criteria",
    "flags": "p_flags",
    "rationale": "p_rationale",
    "scheme": "a.scheme",
    "allow_tie": "a.allow_tie",
    "allow_both_bad": "a.allow_both_bad",
    "project_criteria": "a.criteria",
    "project_flags": "a.flags",
    "rationale_rule": "a.rationale",
    "rationale_min_length": "a.rationale_min_length",
}
_ANSWER_PROBLEM, _ANSWER_DETAIL = answer_problem_sql(_ANSWER_TERMS, "outcome")

# The template holds JSON braces, so the constants go in by name rather than by format().
_PLACES = {
    "__ANSWER_PROBLEM__": _ANSWER_PROBLEM,
    "__ANSWER_DETAIL__": _ANSWER_DETAIL,
    "__JUDGMENT_INSERT__": plpgsql(JUDGMENT_INSERT),
    "__JUDGMENT_RETURNING__": JUDGMENT_RETURNING,
    "__COMPARISON_VOTE__": plpgsql(COMPARISON_VOTE),
    "__MEMBER_VOTE__": plpgsql(MEMBER_VOTE),
    "__LATE_REFUSAL__": plpgsql(LATE_REFUSAL),
    "__STANDING_REFUSAL__": plpgsql(STANDING_REFUSAL),
    "__LEASE_EXPIRE__": plpgsql(LEASE_CLOSE, status="'expired'"),
    "__LEASE_SUBMIT__": plpgsql(LEASE_CLOSE, status="'submitted'"),
    # An open lease's slot (none for gold: SLOT_FREE says so).
    "__SLOT_FREE__": plpgsql(SLOT_FREE, freed="1"),
    "__CAP_REFUSAL__": f"{perform(MEMBER_LOCK)};\n    {plpgsql(CAP_REFUSAL)}",
}
SUBMIT_FUNCTION = _SUBMIT_TEMPLATE
for _place, _text in _PLACES.items():
    SUBMIT_FUNCTION = SUBMIT_FUNCTION.replace(_place, _text)
