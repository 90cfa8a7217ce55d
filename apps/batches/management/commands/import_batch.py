from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.errors import ApplicationError
from apps.batches.honeypots import honeypots_of_batch
from apps.batches.import_format import ImportFormatError
from apps.batches.models import BatchStatus
from apps.batches.selectors import prompts_awaiting_candidates
from apps.batches.services import batch_import
from apps.projects.models import Project


class Command(BaseCommand):
    help = (
        "Import a JSON Lines file of prompts and candidates as a new batch of a project "
        "(with --candidates-optional, prompts whose responses are generated later)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", type=Path, help="the JSON Lines file")
        parser.add_argument("--name", default="", help="the batch's name (default: file name)")
        parser.add_argument(
            "--background",
            action="store_true",
            help="hand the import to a Celery worker and return at once",
        )
        parser.add_argument(
            "--candidates-optional",
            action="store_true",
            help="prompts may come with fewer candidates than a comparison needs (none or 1; "
            "fewer than 3 listwise), to have their responses generated; they get no comparison "
            "until then",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        with path.open("rb") as source:
            try:
                batch = batch_import(
                    project=project,
                    source=source,
                    size=path.stat().st_size,
                    name=options["name"] or path.name,
                    background=bool(options["background"]),
                    candidates_optional=bool(options["candidates_optional"]),
                )
            except ImportFormatError as exc:
                for error in exc.errors:
                    where = f"line {error.line}" if error.line is not None else "file"
                    self.stderr.write(f"{path}: {where}: {error.error}")
                if exc.total > len(exc.errors):
                    self.stderr.write(f"... and {exc.total - len(exc.errors)} more errors")
                raise CommandError(f"{exc.total} error(s); nothing was imported.") from None
            except ApplicationError as exc:  # the task queue is down: nothing was created
                raise CommandError(str(exc)) from None
        batch.refresh_from_db()
        if batch.status == BatchStatus.FAILED:
            for error in batch.errors:
                self.stderr.write(f"{path}: line {error['line']}: {error['error']}")
            raise CommandError("The file has errors; nothing was imported.")
        if batch.status == BatchStatus.IMPORTING:
            self.stdout.write(f"Batch {batch.pk} is importing in the background.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported batch {batch.pk} into {project.slug}: {batch.prompt_count} prompts, "
                f"{batch.comparison_count} comparisons ({honeypots_of_batch(batch.pk)} of them "
                "generated gold items, honeypots)."
            )
        )
        if batch.candidates_optional:
            self.stdout.write(
                f"{prompts_awaiting_candidates(batch)} prompt(s) await candidates (fewer than "
                "a comparison needs)."
            )
