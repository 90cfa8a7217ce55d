from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class JudgingConfig(AppConfig):
    name = "apps.judging"
    label = "judging"

    def ready(self) -> None:
        from apps.judging.dbfunctions import check_queue_functions

        post_migrate.connect(install_queue_functions, sender=self)
        checks.register(check_queue_functions, checks.Tags.database)


def install_queue_functions(using: str = "default", **kwargs: Any) -> None:
    """(Re)creates the queue's PostgreSQL functions after every migrate; elsewhere, nothing.

    They hold no data, so replacing them is always safe, and doing it here keeps them equal to
    the code that calls them (apps.judging.queue_sql) without a migration per change. Each is
    signed with the code's hash, which serving compares (apps.judging.dbfunctions).
    """
    from apps.judging.dbfunctions import functions_install

    functions_install(using=using)
