import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

app = Celery("annotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def refuse_stale_database_functions(**kwargs: Any) -> None:
    """A worker does not start on queue functions of other code (a deploy without migrate).
    SystemExit, since Celery logs and swallows a receiver's Exception."""
    from django.core.exceptions import ImproperlyConfigured

    from apps.judging.queue.installed import refuse_stale_functions

    try:
        refuse_stale_functions()
    except ImproperlyConfigured as error:
        raise SystemExit(f"ImproperlyConfigured: {error}") from error
