"""manage.py prune_renderings [--older-than-days N]: the beat job `prune-renderings` by hand (or
from cron, where no beat runs): deletes the judging page's stored renderings older than N days
(default RENDERINGS_MAX_AGE_DAYS), which are a cache: a text still shown is rendered again."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.judging.rendering import renderings_prune


class Command(BaseCommand):
    help = (
        "Delete the judging page's stored renderings (a cache of the texts' HTML) stored more "
        "than --older-than-days days ago (default RENDERINGS_MAX_AGE_DAYS; 0 deletes them all), "
        "and say how many."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="delete the renderings stored more than this many days ago (0: all of them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if days is None:
            days = settings.RENDERINGS_MAX_AGE_DAYS
            if not days:
                raise CommandError(
                    "RENDERINGS_MAX_AGE_DAYS is 0 (renderings are kept): name an age with "
                    "--older-than-days."
                )
        if days < 0:
            raise CommandError("--older-than-days must be 0 or more.")
        pruned = renderings_prune(older_than=timedelta(days=days))
        self.stdout.write(
            f"Deleted {pruned.deleted} renderings stored before "
            f"{pruned.cutoff:%Y-%m-%d %H:%M} UTC; {pruned.left} left. A text shown again is "
            "rendered again then."
        )
