import logging

from celery import shared_task

from apps.generation.services import generation_run, generation_sweep

logger = logging.getLogger(__name__)


# acks_late (CELERY_TASK_ACKS_LATE): a redelivered message finds the job held by a live run, or
# no longer queued, and does nothing; a run whose worker died is the sweep's to re-queue.
@shared_task(name="apps.generation.tasks.generation_run_task")
def generation_run_task(job_id: int) -> str:
    return generation_run(job_id=job_id)


@shared_task(name="apps.generation.tasks.generation_sweep_task")
def generation_sweep_task() -> dict[str, int]:
    """The beat job: re-sends lost jobs and re-queues those whose worker died."""
    return generation_sweep()
