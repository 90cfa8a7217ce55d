"""Starts a generation job from the shell, as the admin and the API do (the same service, the
same rules, the same audit), on behalf of a lead or staff user named with --as."""

import time
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.errors import ApplicationError
from apps.batches.models import Batch
from apps.generation.models import GenerationJob, JobStatus, Pairing
from apps.generation.services import GenerationInvalid, endpoints_named, generation_start

ENDED = (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.STOPPED)


class Command(BaseCommand):
    help = "Generate candidates for a batch's prompts from model endpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("batch", type=int, help="the batch's id")
        parser.add_argument(
            "--endpoint",
            action="append",
            required=True,
            help="an endpoint's name (the project's own, or a shared one); repeat for several",
        )
        parser.add_argument("--samples", type=int, default=1, help="responses per endpoint")
        parser.add_argument("--as", dest="username", required=True, help="a lead or staff user")
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--system-prompt", default="")
        parser.add_argument("--pairing", choices=Pairing.values, default=Pairing.ALL)
        parser.add_argument("--pairs-per-prompt", type=int)
        parser.add_argument(
            "--wait", action="store_true", help="print the progress until the job ends"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        batch = Batch.objects.select_related("project").filter(pk=options["batch"]).first()
        if batch is None:
            raise CommandError(f"No batch {options['batch']}.")
        try:
            endpoints = endpoints_named(batch, options["endpoint"])
            job = generation_start(
                batch=batch,
                endpoints=endpoints,
                samples=options["samples"],
                by=user,
                temperature=options["temperature"],
                top_p=options["top_p"],
                max_tokens=options["max_tokens"],
                seed=options["seed"],
                system_prompt=options["system_prompt"],
                pairing=options["pairing"],
                pairs_per_prompt=options["pairs_per_prompt"],
            )
        except GenerationInvalid as invalid:
            raise CommandError(
                "; ".join(f"{field}: {message}" for field, message in invalid.problems.items())
            ) from None
        except ApplicationError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Generation job {job.pk}: {job.requests_total} requests, {job.status}.")
        while options["wait"] and job.status not in ENDED:
            time.sleep(2)
            job = GenerationJob.objects.get(pk=job.pk)
            self.stdout.write(
                f"  {job.status}: {job.requests_done} of {job.requests_total} made, "
                f"{job.requests_failed} failed, {job.comparisons_made} comparisons"
            )
        job.refresh_from_db()
        self.stdout.write(
            f"Generation job {job.pk} {job.status}: {job.requests_done} made, "
            f"{job.requests_failed} failed, {job.comparisons_made} comparisons, "
            f"cost {job.cost}.{' ' + job.note if job.note else ''}"
        )
