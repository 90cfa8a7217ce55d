from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class JudgingConfig(AppConfig):
    name = "apps.judging"
    label = "judging"

    def ready(self) -> None:
        # Imported here, once the models are loaded (Django's place for hooks): the queue's
        # modules import models, which cannot be imported while this module is.
        from apps.judging.queue import installed

        # Every `migrate` (re)creates the queue's PostgreSQL functions and signs them with the
        # code's hash; serving refuses to start when they differ (apps.judging.queue.installed).
        post_migrate.connect(installed.install_after_migrate, sender=self)
        checks.register(installed.check_queue_functions, checks.Tags.database)
