import logging

from celery import shared_task

from apps.batches.services import batch_import_abort, batch_import_stored

logger = logging.getLogger(__name__)


@shared_task(name="apps.batches.tasks.batch_import_task")
def batch_import_task(batch_id: int) -> str:
    try:
        batch = batch_import_stored(batch_id=batch_id)
    except Exception:
        # Not the file's fault (a database error, a bug): the batch must not stay "importing"
        # forever, and the lead must see that it failed.
        logger.exception("import of batch %s failed", batch_id)
        batch_import_abort(batch_id=batch_id, reason="the import failed on the server; try again")
        raise
    return batch.status
