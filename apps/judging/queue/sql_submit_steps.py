"""Submit's steps that both paths run: written once, as SQL statements with named parameters
(`%(annotator)s`, bound by Django's cursor on every backend), and run two ways:

- on PostgreSQL, inside annotate_submit (sql_submit), which embeds these very statements with
  the parameters turned into its variables (plpgsql): still one round trip;
- elsewhere (SQLite 3.35+, and PostgreSQL for a ranking), by submit.py through a cursor
  (statements.run), one statement each, with a lock statement first where the database locks rows.

Their parameters: annotator, comparison, overlap, margin (the project's stop_margin), project,
project_cap, batch, batch_cap, min_accuracy and min_answers (the gold rule's); for the judgment
the answer's columns (choice, strength, criteria, flags, ranking, rationale, duration, key), the
lease's (assignment, left, right, guideline_version), option and now; and for the counts rank,
was_open and gold_correct.
"""

from apps.batches.queue_order import complete_sql, decided_sql, filled_sql
from apps.judging.models import Judgment
from apps.judging.queue import statements
from apps.judging.queue.sql_lease import HOLDS_SLOT
from apps.judging.queue.statements import embed
from apps.projects.rules import GOLD_STOP, Rule, as_sql

# Who may no longer act on a lease they took, in this order: a deactivated account, a removed
# member, an annotator stopped by the gold rule. Each outcome with its rule (projects.rules)
# over the annotator's standing: standing.standing_problem evaluates the table on values
# already loaded, STANDING_REFUSAL below is the same table as SQL.
STANDING_RULES: tuple[tuple[str, Rule], ...] = (
    ("inactive", (("active", "=", "false"),)),
    ("not_member", (("member", "=", "false"),)),
    ("stopped", GOLD_STOP),
)
_STANDING_TERMS = {
    "active": "u.is_active",
    "member": "(m.id IS NOT NULL)",
    "correct": "m.gold_correct",
    "answered": "m.gold_answered",
    "min_accuracy": "%(min_accuracy)s",
    "min_answers": "%(min_answers)s",
}
# The refusal's outcome (NULL when the annotator may go on), and their gold answers: correct,
# answered (for the stopped refusal's reason; NULL for one who is no member).
_STANDING_CASES = "\n        ".join(
    f"WHEN {as_sql(rule, _STANDING_TERMS)} THEN '{outcome}'" for outcome, rule in STANDING_RULES
)
STANDING_REFUSAL = f"""SELECT CASE
        {_STANDING_CASES}
    END, m.gold_correct, m.gold_answered
    FROM auth_user u
    LEFT JOIN projects_membership m ON m.project_id = %(project)s AND m.user_id = u.id
    WHERE u.id = %(annotator)s"""

# A reclaimed lease: its judgment goes only into a free slot, never past the overlap (gold items
# have none), nor into a comparison whose lead reached the stop margin (one that stopped early
# is refused as one that has all its overlap's votes is), and not from an
# annotator who has judged the comparison since. The refusal's outcome ('late_full',
# 'already_judged'), NULL when the judgment may go in.
LATE_REFUSAL = f"""SELECT CASE
        WHEN NOT cmp.is_gold AND (
            {filled_sql("cmp")} >= %(overlap)s OR {decided_sql(margin="%(margin)s", alias="cmp")})
        THEN 'late_full'
        WHEN EXISTS (SELECT 1 FROM judging_judgment j
                     WHERE j.comparison_id = cmp.id AND j.annotator_id = %(annotator)s)
        THEN 'already_judged'
    END
    FROM batches_comparison cmp WHERE cmp.id = %(comparison)s"""

# The caps, checked again as the judgment arrives: an annotator with two leases taken at once
# must not pass a cap with both, so the member's row is locked first (MEMBER_LOCK, after the
# assignment and the comparison, the order everywhere), and the caps read in a statement of
# their own: a statement that waited for the lock would count the batch's judgments as they
# were before it waited. The batch's count reads at most batch_cap rows. The refusal's outcome
# ('project_cap', 'batch_cap'), NULL when the judgment may go in.
MEMBER_LOCK = """SELECT 1 FROM projects_membership
    WHERE project_id = %(project)s AND user_id = %(annotator)s
    FOR UPDATE"""
CAP_REFUSAL = """SELECT CASE
        WHEN %(project_cap)s IS NOT NULL AND m.judgment_count >= %(project_cap)s
        THEN 'project_cap'
        WHEN %(batch_cap)s IS NOT NULL AND (
            SELECT count(*) FROM (
                SELECT 1 FROM judging_judgment j
                WHERE j.annotator_id = %(annotator)s AND j.batch_id = %(batch)s
                LIMIT coalesce(%(batch_cap)s, 0)
            ) done
        ) >= %(batch_cap)s
        THEN 'batch_cap'
    END
    FROM projects_membership m
    WHERE m.project_id = %(project)s AND m.user_id = %(annotator)s"""


def _one_if(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _votes(option: str) -> str:
    same = f"%(option)s = '{option}'"
    return f"votes_{option} + {_one_if(same)}"


# The comparison's counts after one more vote for option (a, b, tie, both_bad; NULL for a
# ranking, which moves no pairwise vote). A fresh rank at each new level: levels are handed out
# in rank order, so without it whoever worked first would own the head of the next level, and
# would have to scan past all of it there: the cost would grow with their history. The lease's
# slot goes back when the lease was still open (was_open: 1, else 0; a reclaim gave it back
# already) and held one (sql_lease.HOLDS_SLOT), and `complete` follows the one rule
# (batches.queue_order).
COMPARISON_VOTE = f"""UPDATE batches_comparison SET
        judgment_count = judgment_count + 1,
        votes_a = {_votes("a")},
        votes_b = {_votes("b")},
        votes_tie = {_votes("tie")},
        votes_both_bad = {_votes("both_bad")},
        split = abs({_votes("a")} - ({_votes("b")})),
        rank = %(rank)s,
        lease_count = lease_count - CASE WHEN {HOLDS_SLOT} THEN %(was_open)s ELSE 0 END,
        complete = {
    complete_sql(overlap="%(overlap)s", margin="%(margin)s", votes_added=1, option="%(option)s")
}
    WHERE id = %(comparison)s"""

# The member's counts after one more judgment, and their gold answers (gold_correct: NULL for
# an ordinary comparison, else whether the answer was right).
MEMBER_VOTE = f"""UPDATE projects_membership SET
        judgment_count = judgment_count + 1,
        gold_answered = gold_answered + {_one_if("%(gold_correct)s IS NOT NULL")},
        gold_correct = gold_correct + {_one_if("%(gold_correct)s")}
    WHERE project_id = %(project)s AND user_id = %(annotator)s"""

# The new judgment: each column of judging_judgment it sets, and its value over the parameters.
# What is derived is derived here: the winner (chosen_id, none for tie, both bad or a ranking)
# and whether a gold comparison was answered right (gold_correct, NULL for any other), read from
# the comparison in the same statement. A column the model requires (NOT NULL, no default in
# the database) and this leaves out would fail every judgment: tests/annotate/test_migrations.py
# checks statements.unset_required_columns() is empty for it.
JUDGMENT_VALUES = {
    "comparison_id": "cmp.id",
    "batch_id": "cmp.batch_id",
    "annotator_id": "%(annotator)s",
    "assignment_id": "%(assignment)s",
    "choice": "%(choice)s",
    "left_id": "%(left)s",
    "right_id": "%(right)s",
    "chosen_id": "CASE %(choice)s WHEN 'left' THEN %(left)s WHEN 'right' THEN %(right)s END",
    "strength": "%(strength)s",
    "criteria": "%(criteria)s",
    "flags": "%(flags)s",
    "ranking": "%(ranking)s",
    "guideline_version": "%(guideline_version)s",
    "rationale": "%(rationale)s",
    "duration_ms": "%(duration)s",
    "idempotency_key": "%(key)s",
    "gold_correct": "CASE WHEN cmp.is_gold THEN %(option)s = cmp.gold_answer END",
    "created_at": "%(now)s",
}
# Each path adds its ending: annotate_submit an ON CONFLICT clause (the ORM path lets the
# unique key raise), then both JUDGMENT_RETURNING.
JUDGMENT_INSERT = f"""INSERT INTO {Judgment._meta.db_table} ({", ".join(JUDGMENT_VALUES)})
    SELECT {", ".join(JUDGMENT_VALUES.values())}
    FROM batches_comparison cmp WHERE cmp.id = %(comparison)s"""
JUDGMENT_RETURNING = "RETURNING id, chosen_id, gold_correct"


# annotate_submit's variable (or expression) for each parameter. The statements' table aliases
# must not be one of its record variables (a, c): PL/pgSQL would find the name ambiguous.
_VARIABLES = {
    "annotator": "p_annotator",
    "assignment": "a.id",
    "comparison": "a.comparison_id",  # c.id, and known before c is read
    "overlap": "a.overlap",
    "margin": "a.stop_margin",
    "project": "a.project_id",
    "project_cap": "a.project_cap",
    "min_accuracy": "a.gold_min_accuracy",
    "min_answers": "a.gold_min_answers",
    "now": "p_now",
    "choice": "p_choice",
    "left": "a.left_id",
    "right": "a.right_id",
    "strength": "o_strength",
    "criteria": "o_criteria",
    "flags": "p_flags",
    "ranking": "NULL",  # a ranking never comes to annotate_submit
    "guideline_version": "a.guideline_version",
    "rationale": "p_rationale",
    "duration": "p_duration",
    "key": "p_key",
    "batch": "c.batch_id",
    "batch_cap": "c.batch_cap",
    "option": "v_option",
    "rank": "floor(random() * 2147483648)::integer",  # batches.models.random_rank
    "was_open": "(a.status = 'open')::integer",
    "gold_correct": "o_gold_correct",
}


def plpgsql(sql: str, **given: str) -> str:
    """A shared statement as annotate_submit's PL/pgSQL text; `given`: the value of a parameter
    that is a constant there (a lease's new status)."""
    return embed(sql, {**_VARIABLES, **given})


def perform(sql: str) -> str:
    """A shared SELECT run for its locks alone, as annotate_submit's PL/pgSQL text."""
    return statements.perform(sql, _VARIABLES)


# The comparison's lock, for the ORM path (annotate_submit takes it as it reads the row).
COMPARISON_LOCK = "SELECT 1 FROM batches_comparison WHERE id = %(comparison)s FOR UPDATE"
