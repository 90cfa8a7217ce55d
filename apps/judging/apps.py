from typing import Any

from django.apps import AppConfig
from django.db import connections, transaction
from django.db.models.signals import post_migrate


class JudgingConfig(AppConfig):
    name = "apps.judging"
    label = "judging"

    def ready(self) -> None:
        post_migrate.connect(install_queue_functions, sender=self)


def install_queue_functions(using: str = "default", **kwargs: Any) -> None:
    """(Re)creates the queue's PostgreSQL functions after every migrate; elsewhere, nothing.

    They hold no data, so replacing them is always safe, and doing it here keeps them equal to
    the code that calls them (apps.judging.queue_sql) without a migration per change.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    from apps.judging.queue import functions_sql

    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(functions_sql())
