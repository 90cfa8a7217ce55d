from celery import shared_task

from apps.judging.services import leases_reclaim_expired


@shared_task(name="apps.judging.tasks.leases_reclaim_expired_task")
def leases_reclaim_expired_task() -> int:
    """The beat sweep: returns every expired lease to the pool, in rounds of a few hundred."""
    total = 0
    while reclaimed := leases_reclaim_expired():
        total += reclaimed
    return total
