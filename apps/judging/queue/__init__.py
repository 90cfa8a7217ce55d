"""The queue: handing out comparisons (leases) and taking judgments.

Locking, in one order everywhere so that no two transactions wait on each other in a cycle:
an assignment row first, then its comparison row. The pick takes its comparison with
SKIP LOCKED and so never waits. Comparison.judgment_count + lease_count (the slots taken) is
changed only here, always under the comparison's row lock, and never exceeds project.overlap.

On PostgreSQL next, submit and the reclaim run as PL/pgSQL functions (sql_*.py), one round trip
each; elsewhere the ORM path runs the same rules (backend.py says which). Import from here: the
modules inside are the package's own business.
"""

from apps.judging.queue.errors import (
    AnnotatorBlocked,
    AssignmentNotFound,
    IdempotencyConflict,
    JudgmentConflict,
    JudgmentError,
)
from apps.judging.queue.invalidate import judgments_invalidate
from apps.judging.queue.next import (
    assignment_next,
    assignment_next_after,
    assignment_next_in,
    comparison_peek,
)
from apps.judging.queue.overlap import overlap_changed
from apps.judging.queue.policy import (
    MAX_DURATION_MS,
    MAX_IDEMPOTENCY_KEY,
    MAX_RATIONALE,
    RECLAIM_LIMIT,
    UNDO_SECONDS,
    WINDOW,
)
from apps.judging.queue.reclaim import batch_leases_reclaim, leases_reclaim_expired
from apps.judging.queue.results import (
    NEXT_BLOCKED,
    NEXT_NONE_LEFT,
    NEXT_REASONS,
    NEXT_UNAVAILABLE,
    InvalidationResult,
    NextAfter,
    Preference,
    SkipResult,
    SubmitResult,
    UndoResult,
)
from apps.judging.queue.skip_undo import assignment_skip, judgment_undo
from apps.judging.queue.sql import FUNCTION_NAMES, functions_sql
from apps.judging.queue.standing import assignment_release_refused
from apps.judging.queue.submit import judgment_submit
from apps.judging.queue.upkeep import (
    QUEUE_TABLES,
    TableUpkeep,
    VacuumInTransaction,
    queue_tables_vacuum,
)

__all__ = [
    "FUNCTION_NAMES",
    "MAX_DURATION_MS",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_RATIONALE",
    "NEXT_BLOCKED",
    "NEXT_NONE_LEFT",
    "NEXT_REASONS",
    "NEXT_UNAVAILABLE",
    "QUEUE_TABLES",
    "RECLAIM_LIMIT",
    "UNDO_SECONDS",
    "WINDOW",
    "AnnotatorBlocked",
    "AssignmentNotFound",
    "IdempotencyConflict",
    "InvalidationResult",
    "JudgmentConflict",
    "JudgmentError",
    "NextAfter",
    "Preference",
    "SkipResult",
    "SubmitResult",
    "TableUpkeep",
    "UndoResult",
    "VacuumInTransaction",
    "assignment_next",
    "assignment_next_after",
    "assignment_next_in",
    "assignment_release_refused",
    "assignment_skip",
    "batch_leases_reclaim",
    "comparison_peek",
    "functions_sql",
    "judgment_submit",
    "judgment_undo",
    "judgments_invalidate",
    "leases_reclaim_expired",
    "overlap_changed",
    "queue_tables_vacuum",
]
