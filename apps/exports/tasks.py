from celery import shared_task

from apps.exports.jobs import export_job_run, export_jobs_sweep


# acks_late (CELERY_TASK_ACKS_LATE) keeps the message until the run returns, so a worker that
# dies mid-export has its message delivered again later (Redis: after the visibility timeout).
# reject_on_worker_lost stays off: a requeue at once would find the job running with a fresh
# heartbeat and do nothing. Recovery is the sweep's (stale heartbeat), and any late redelivery
# is harmless: export_job_run claims the job with a conditional UPDATE, so one run at a time.
@shared_task(name="apps.exports.tasks.export_job_task", acks_late=True)
def export_job_task(job_id: int) -> str:
    """Builds one background export's file; errors mark the job failed (see jobs.py)."""
    return export_job_run(job_id)


@shared_task(name="apps.exports.tasks.exports_sweep_task")
def exports_sweep_task() -> dict[str, int]:
    """The beat job: re-queues or fails exports whose worker died; expires old files."""
    return export_jobs_sweep()
