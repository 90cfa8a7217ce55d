"""Django's migrate, during whose system checks the queue-functions check stands aside: migrate is
what installs the functions (apps.judging.queue.installed), so it must run while they are missing or
old, when every other command refuses."""

from typing import Any

from django.core.management.commands import migrate

from apps.judging.queue.installed import installing


class Command(migrate.Command):
    def check(self, *args: Any, **kwargs: Any) -> None:
        with installing():
            super().check(*args, **kwargs)
