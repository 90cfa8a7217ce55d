"""manage.py export <project> --format <format>: the export endpoint's file, from the shell.

Streams JSON Lines (or, with --lines false, one JSON array) to stdout or --output, row by row
(constant memory at any size), with the same formats, parameters and bytes as
GET /api/v1/projects/<slug>/export/; or, with
--file-format parquet (the default for an --output ending in .parquet), writes the Parquet file
a background export job writes for the same parameters, with the jobs' writer.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import ValidationError

from apps.exports.api import export_options, json_array_chunks, jsonl_chunks
from apps.exports.card import dataset_card
from apps.exports.cursor import format_since, next_since
from apps.exports.formats import FORMATS, export_rows
from apps.exports.jobs import export_parquet_write
from apps.exports.models import FileFormat
from apps.exports.options import PARAMETERS
from apps.projects.models import Project


class Command(BaseCommand):
    help = "Writes a project's export as JSON Lines or Parquet (the export endpoint's formats)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("--format", default="trl", choices=[*FORMATS, "card"])
        parser.add_argument("--batch", help="only this batch (its id)")
        parser.add_argument("--both-bad", choices=["exclude", "include"], help="kto only")
        parser.add_argument("--include-ties", choices=["true", "false"], help="arena and judgments")
        parser.add_argument(
            "--aggregate",
            choices=["majority", "unanimous", "mean_strength", "reliability"],
            help="pairwise formats and card (default majority)",
        )
        parser.add_argument("--models", help="comma-separated model names")
        parser.add_argument(
            "--include-gold", choices=["true", "false"], help="include gold comparisons"
        )
        parser.add_argument("--since", help="an ISO 8601 time with its offset")
        parser.add_argument("--criterion", help="pairwise formats and card: a criterion's name")
        parser.add_argument("--min-votes", help="pairwise formats: at least this many votes")
        parser.add_argument(
            "--min-agreement", help="pairwise formats: the majority's least share (0-1)"
        )
        parser.add_argument("--split", choices=["train", "test"], help="by prompt")
        parser.add_argument("--test-fraction", help="with --split (default 0.1)")
        parser.add_argument(
            "--sources",
            choices=["human", "ai", "all"],
            help="whose votes: people's (default), the AI judges' or both",
        )
        parser.add_argument(
            "--prompt-form",
            choices=["conversational", "text"],
            help="trl, trl-implicit, kto, listwise: messages (default) or text",
        )
        parser.add_argument(
            "--lines",
            choices=["true", "false"],
            help="false: one JSON array instead of JSON Lines (not with Parquet)",
        )
        parser.add_argument("--output", "-o", help="a file to write (default: stdout)")
        parser.add_argument(
            "--file-format",
            choices=FileFormat.values,
            help="jsonl, or parquet (needs --output); default parquet for an --output ending "
            "in .parquet, else jsonl",
        )

    def _write(self, data: bytes, options: dict[str, Any]) -> None:
        if options["output"]:
            Path(options["output"]).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        # The export's parameters, each under its own name (argparse's dest for --min-votes is
        # min_votes): parsed and checked by the endpoint's parser.
        params = {name: options[name] for name in PARAMETERS if options[name] is not None}
        try:
            export = export_options(params, options["format"], project)
        except ValidationError as exc:
            problems = "; ".join(
                f"{name}: {' '.join(str(m) for m in messages)}"
                for name, messages in dict(exc.detail).items()  # type: ignore[arg-type]
            )
            raise CommandError(problems) from None
        lines = options["lines"] != "false"
        if options["lines"] is not None and options["format"] == "card":
            raise CommandError("lines: --format card is Markdown; it takes no --lines.")
        file_format = options["file_format"] or (
            FileFormat.PARQUET
            if (options["output"] or "").lower().endswith(".parquet")
            else FileFormat.JSONL
        )
        if file_format == FileFormat.PARQUET:
            if options["format"] == "card":
                raise CommandError(
                    "file_format: --format card is Markdown; it has no Parquet form."
                )
            if options["lines"] is not None:
                raise CommandError("lines: Parquet has no lines; --lines is for JSON.")
            if not options["output"]:
                raise CommandError(
                    "file_format: Parquet is not written to stdout (its footer comes last and "
                    "readers seek to it); give --output FILE.parquet."
                )
        if options["format"] == "card":
            self._write(dataset_card(project=project, options=export).encode(), options)
            return
        upcoming = next_since()
        rows = export_rows(project=project, format=options["format"], options=export)
        chunks = jsonl_chunks if lines else json_array_chunks
        if file_format == FileFormat.PARQUET:
            with _replacing(Path(options["output"])) as out:
                export_parquet_write(
                    project=project, format=options["format"], options=export, rows=rows, sink=out
                )
        elif options["output"]:
            with _replacing(Path(options["output"])) as out:
                for chunk in chunks(rows):
                    out.write(chunk)
        else:
            for chunk in chunks(rows):
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        # On stderr, so that stdout stays the JSON Lines: see apps/exports/cursor.py.
        self.stderr.write(f"next since: {format_since(upcoming)}")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A file written beside `path` that takes its place only once complete: an export that
    fails midway leaves no partial file (and any earlier file at `path` as it was)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        out = partial.open("wb")
    except OSError as exc:
        raise CommandError(f"output: cannot write {path}: {exc.strerror}.") from None
    try:
        with out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
