"""What judging hangs on Django's and the lower apps' signals, connected once by
JudgingConfig.ready()."""

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate

from apps.batches.signals import batch_stored
from apps.judging.queue import installed
from apps.judging.tasks import render_batch_send


def render_stored_batch(*, batch_id: int, **kwargs: Any) -> None:
    """A batch's rows are stored: its texts are rendered for the judging page in the background
    (without a broker, each page renders a text the first time it shows it)."""
    render_batch_send(batch_id)


def connect(config: AppConfig) -> None:
    # Every `migrate` (re)creates the queue's PostgreSQL functions and signs them with the code's
    # hash; serving refuses to start when they differ (apps.judging.queue.installed).
    post_migrate.connect(installed.install_after_migrate, sender=config)
    checks.register(installed.check_queue_functions, checks.Tags.database)
    batch_stored.connect(render_stored_batch, dispatch_uid="judging.render_stored_batch")
