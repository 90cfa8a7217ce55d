"""manage.py vacuum_queue [--min-dead N]: the beat job `vacuum-queue` by hand (or from cron,
where no beat runs): VACUUM of each queue table with N dead rows or more, or as many inserted
since its last VACUUM (see apps/judging/queue/upkeep.py)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.judging.queue import queue_tables_vacuum


class Command(BaseCommand):
    help = (
        "VACUUM the queue's tables (comparisons, assignments) that have at least --min-dead dead "
        "rows, or as many inserted since their last VACUUM (default QUEUE_VACUUM_MIN_DEAD), and "
        "say what was done. PostgreSQL only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--min-dead",
            type=int,
            default=None,
            help="vacuum a table from this many dead (or newly inserted) rows (0: every table)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["min_dead"] is not None and options["min_dead"] < 0:
            raise CommandError("--min-dead must be 0 or more.")
        report = queue_tables_vacuum(min_dead=options["min_dead"])
        if not report:
            self.stdout.write("Nothing to do: the queue needs no VACUUM on this database.")
            return
        for table in report:
            found = (
                f"{table.table}: {table.dead} dead rows, {table.inserted} inserted since its "
                "last VACUUM"
            )
            if table.vacuumed:
                self.stdout.write(f"{found}, vacuumed in {table.seconds:.2f} s")
            else:
                self.stdout.write(f"{found}, left as it is")
