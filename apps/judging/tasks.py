import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from annotate.broker import BrokerUnavailable, send_task
from apps.judging.queue import leases_reclaim_expired, queue_tables_vacuum
from apps.judging.rendering import renderings_for_batch, renderings_prune

logger = logging.getLogger(__name__)

# A round of `render_batch_task` renders for about this long, then sends the next round: a worker
# is never held for the whole of a large batch, and a round lost with its worker costs little.
RENDER_ROUND_SECONDS = 20.0


@shared_task(name="apps.judging.tasks.leases_reclaim_expired_task")
def leases_reclaim_expired_task() -> int:
    """The beat sweep: returns every expired lease to the pool, in rounds of a few hundred."""
    total = 0
    while reclaimed := leases_reclaim_expired():
        total += reclaimed
    return total


@shared_task(name="apps.judging.tasks.queue_vacuum_task")
def queue_vacuum_task() -> dict[str, int]:
    """The beat job `vacuum-queue`: VACUUMs each queue table with QUEUE_VACUUM_MIN_DEAD dead
    rows, or as many inserted since its last VACUUM (apps/judging/queue/upkeep.py). Returns the
    dead rows of each table vacuumed."""
    vacuumed = {}
    for table in queue_tables_vacuum():
        if table.vacuumed:
            vacuumed[table.table] = table.dead
            logger.info(
                "vacuumed %s (%s dead rows) in %.2f s", table.table, table.dead, table.seconds
            )
    return vacuumed


@shared_task(name="apps.judging.tasks.render_batch_task")
def render_batch_task(batch_id: int, after: int = 0) -> int | None:
    """Renders an imported batch's texts for the judging page, after its import (see
    apps/judging/rendering.py), a round at a time. Running a round twice is harmless: a text
    already rendered is skipped. Returns where the next round starts, or None at the end."""
    last = renderings_for_batch(batch_id=batch_id, after=after, seconds=RENDER_ROUND_SECONDS)
    if last is not None:
        render_batch_send(batch_id, after=last)
    return last


def render_batch_send(batch_id: int, *, after: int = 0) -> None:
    """Sends a batch's rendering to the workers. Without a broker it is not sent, and the pages
    render each text the first time they show it (as they would anyway)."""
    try:
        send_task("apps.judging.tasks.render_batch_task", batch_id, after)
    except BrokerUnavailable:
        logger.warning(
            "rendering of batch %s (from prompt %s) not sent: pages render on first show",
            batch_id,
            after,
        )


@shared_task(name="apps.judging.tasks.renderings_prune_task")
def renderings_prune_task() -> int:
    """The beat job `prune-renderings`: deletes the stored renderings older than
    RENDERINGS_MAX_AGE_DAYS (none while it is 0). Returns how many."""
    days = settings.RENDERINGS_MAX_AGE_DAYS
    if not days:
        return 0
    return renderings_prune(older_than=timedelta(days=days)).deleted
