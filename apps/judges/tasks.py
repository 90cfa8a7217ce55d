from celery import shared_task

from apps.judges.services import judging_run, judging_sweep


@shared_task(name="apps.judges.tasks.judging_run_task")
def judging_run_task(job_id: int) -> str:
    return judging_run(job_id=job_id)


@shared_task(name="apps.judges.tasks.judging_sweep_task")
def judging_sweep_task() -> dict[str, int]:
    """The beat job: re-sends lost judging jobs and re-queues those whose worker died."""
    return judging_sweep()
