from celery import shared_task

from apps.batches.services import batch_import_stored


@shared_task(name="apps.batches.tasks.batch_import_task")
def batch_import_task(batch_id: int) -> str:
    batch = batch_import_stored(batch_id=batch_id)
    return batch.status
