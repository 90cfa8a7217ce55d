"""manage.py check_references [--project SLUG] [--batch ID]: the comparisons whose references
do not hold (apps.batches.selectors.reference_problems); exit status 1 when there is one."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.batches.models import Batch
from apps.batches.selectors import REFERENCE_PROBLEMS, reference_problems
from apps.projects.models import Project


class Command(BaseCommand):
    help = (
        "Check, as a set, that every comparison's prompt, candidates and batch exist and belong "
        "together (the database holds no foreign-key constraint for them); exit 1 if not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="only this project's comparisons (its slug)")
        parser.add_argument("--batch", type=int, help="only this batch's comparisons (its id)")

    def handle(self, *args: Any, **options: Any) -> None:
        project_id = batch_id = None
        if options["project"] is not None:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"No project with the slug {options['project']!r}.")
            project_id = project.pk
        if options["batch"] is not None:
            if not Batch.objects.filter(pk=options["batch"]).exists():
                raise CommandError(f"No batch with the id {options['batch']}.")
            batch_id = options["batch"]
        problems = reference_problems(project_id=project_id, batch_id=batch_id)
        if not problems:
            self.stdout.write("Every comparison's references hold.")
            return
        for kind, found in problems.items():
            shown = ", ".join(str(pk) for pk in found["examples"])
            self.stdout.write(
                f"{found['count']} comparison(s): {REFERENCE_PROBLEMS[kind]} (ids {shown}"
                f"{', ...' if found['count'] > len(found['examples']) else ''})"
            )
        raise CommandError("Some comparisons' references do not hold (listed above).")
