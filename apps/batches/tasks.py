import logging

from celery import shared_task

from apps.batches.policy_follow import comparison_policy_follow, policy_follows_sweep
from apps.batches.selectors import REFERENCE_PROBLEMS, reference_problems
from apps.batches.services import batch_import_abort, batch_import_stored, batch_imports_sweep

logger = logging.getLogger(__name__)


# acks_late (CELERY_TASK_ACKS_LATE) keeps the message until the run returns; a late redelivery is
# harmless, since a run claims the import with a conditional UPDATE. A worker that dies is the
# sweep's to recover (its heartbeat stops), as for exports.
@shared_task(name="apps.batches.tasks.batch_import_task")
def batch_import_task(batch_id: int) -> str:
    try:
        return batch_import_stored(batch_id=batch_id)
    except Exception:
        # Not the file's fault (a database error, a bug): the batch must not stay "importing"
        # forever, and the lead must see that it failed.
        logger.exception("import of batch %s failed", batch_id)
        batch_import_abort(batch_id=batch_id, reason="the import failed on the server; try again")
        raise


@shared_task(name="apps.batches.tasks.imports_sweep_task")
def imports_sweep_task() -> dict[str, int]:
    """The beat job: re-sends imports whose message was lost; re-queues or fails imports whose
    worker died."""
    return batch_imports_sweep()


# Idempotent: a duplicate (a redelivery, the sweep's re-send) walks the rows again and changes
# none that already carry the policy.
@shared_task(name="apps.batches.tasks.policy_follow_task")
def policy_follow_task(project_id: int) -> int:
    """Gives the project's comparisons its current policy, in short transactions."""
    return comparison_policy_follow(project_id=project_id)


@shared_task(name="apps.batches.tasks.policy_follows_sweep_task")
def policy_follows_sweep_task() -> int:
    """The beat job: sends the policy follow again for a change left unfollowed."""
    return policy_follows_sweep()


@shared_task(name="apps.batches.tasks.references_check_task")
def references_check_task() -> dict[str, int]:
    """The beat job (daily): the comparisons' references, which have no foreign-key constraint
    in the database, checked as a set (`manage.py check_references`); each kind of fault found is
    logged as an error, for whatever watches the logs. Returns the count per kind found."""
    problems = reference_problems()
    for kind, found in problems.items():
        logger.error(
            "check_references: %s comparison(s): %s (ids %s)",
            found["count"],
            REFERENCE_PROBLEMS[kind],
            ", ".join(str(pk) for pk in found["examples"]),
        )
    return {kind: found["count"] for kind, found in problems.items()}
