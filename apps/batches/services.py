"""Importing batches. The command, the admin form and the REST API all call `batch_import`."""

import io
import logging
from itertools import combinations
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.batches.import_format import ImportFormatError, LineError, ParsedPrompt, parse_jsonl
from apps.batches.models import (
    Batch,
    BatchSource,
    BatchStatus,
    Candidate,
    Comparison,
    GoldAnswer,
    Prompt,
)
from apps.projects.models import Project, Scheme

logger = logging.getLogger(__name__)
BULK_SIZE = 2000


def batch_import(
    *,
    project: Project,
    source: IO[bytes],
    size: int,
    name: str = "",
    created_by: User | None = None,
    background: bool | None = None,
) -> Batch:
    """Imports a JSON Lines file as a new active batch, whole or not at all.

    Files larger than IMPORT_BACKGROUND_BYTES (or with background=True) are stored and imported by
    a Celery task: the batch is returned in status `importing` and ends `active` or `failed`.
    A bad file raises ImportFormatError with every error, and nothing is stored.
    """
    if size > settings.IMPORT_MAX_BYTES:
        raise ImportFormatError(
            [
                LineError(
                    None,
                    f"the file is {size} bytes; the limit is {settings.IMPORT_MAX_BYTES} bytes",
                )
            ]
        )
    if background is None:
        background = size > settings.IMPORT_BACKGROUND_BYTES
    if background:
        return _batch_import_enqueue(
            project=project, source=source, name=name, created_by=created_by
        )
    prompts = parse_jsonl(source, max_errors=settings.IMPORT_MAX_REPORTED_ERRORS)
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project, name=name, status=BatchStatus.IMPORTING, created_by=created_by
        )
        _batch_store(batch=batch, prompts=prompts)
    return batch


def _batch_import_enqueue(
    *, project: Project, source: IO[bytes], name: str, created_by: User | None
) -> Batch:
    from apps.batches.tasks import batch_import_task

    with transaction.atomic():
        batch = Batch.objects.create(
            project=project, name=name, status=BatchStatus.IMPORTING, created_by=created_by
        )
        BatchSource.objects.create(batch=batch, data=source.read())
        transaction.on_commit(lambda: batch_import_task.delay(batch.pk))
    return batch


def batch_import_stored(*, batch_id: int) -> Batch:
    """Imports the stored file of a background batch. Running it twice is harmless."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status != BatchStatus.IMPORTING:
            return batch
        source = BatchSource.objects.filter(batch=batch).first()
        if source is None:
            return _batch_fail(batch, [LineError(None, "the uploaded file was not found")])
        data = bytes(source.data)
        try:
            prompts = parse_jsonl(io.BytesIO(data), max_errors=settings.IMPORT_MAX_REPORTED_ERRORS)
            with transaction.atomic():
                _batch_store(batch=batch, prompts=prompts)
        except ImportFormatError as exc:
            _batch_fail(batch, exc.errors, total=exc.total)
        source.delete()
    return batch


def batch_import_abort(*, batch_id: int, reason: str) -> None:
    """Marks a background import failed for a reason that is not in the file."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is not None and batch.status == BatchStatus.IMPORTING:
            _batch_fail(batch, [LineError(None, reason)])
            BatchSource.objects.filter(batch=batch).delete()


def _batch_fail(batch: Batch, errors: list[LineError], total: int | None = None) -> Batch:
    batch.status = BatchStatus.FAILED
    batch.errors = [error.as_dict() for error in errors]
    if total is not None and total > len(errors):
        batch.errors.append({"line": None, "error": f"... and {total - len(errors)} more errors"})
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "errors", "finished_at"])
    return batch


def _batch_store(*, batch: Batch, prompts: list[ParsedPrompt]) -> None:
    """Stores parsed prompts, their candidates and every pair of candidates, in bulk; in a
    listwise project, one comparison per prompt that ranks all of its candidates."""
    project = batch.project
    listwise = project.scheme == Scheme.LISTWISE
    if listwise:
        _check_listwise(prompts)
    _reject_existing_ids(project, prompts)
    prompt_rows = [
        Prompt(
            project=project,
            batch=batch,
            external_id=p.external_id,
            content=p.content,
            metadata=p.metadata,
        )
        for p in prompts
    ]
    try:
        with transaction.atomic():
            Prompt.objects.bulk_create(prompt_rows, batch_size=BULK_SIZE)
    except IntegrityError:
        # Another import took one of these ids between our check and our insert.
        _reject_existing_ids(project, prompts)
        raise ImportFormatError(
            [LineError(None, "prompt ids collided with a concurrent import; try again")]
        ) from None
    candidate_rows = [
        Candidate(
            prompt=row,
            external_id=c.external_id,
            text=c.text,
            model=c.model,
            params=c.params,
            metadata=c.metadata,
        )
        for row, parsed in zip(prompt_rows, prompts, strict=True)
        for c in parsed.candidates
    ]
    Candidate.objects.bulk_create(candidate_rows, batch_size=BULK_SIZE)
    comparison_rows: list[Comparison] = []
    position = 0
    for row, parsed in zip(prompt_rows, prompts, strict=True):
        own = candidate_rows[position : position + len(parsed.candidates)]
        position += len(parsed.candidates)
        if listwise:
            comparison_rows.append(
                Comparison(
                    project=project,
                    batch=batch,
                    prompt=row,
                    candidate_a=own[0],
                    candidate_b=own[1],
                    candidate_ids=[candidate.pk for candidate in own],
                )
            )
            continue
        for a, b in combinations(own, 2):
            gold_answer = _gold_answer(parsed, a.external_id, b.external_id)
            comparison_rows.append(
                Comparison(
                    project=project,
                    batch=batch,
                    prompt=row,
                    candidate_a=a,
                    candidate_b=b,
                    is_gold=bool(gold_answer),
                    gold_answer=gold_answer,
                )
            )
    Comparison.objects.bulk_create(comparison_rows, batch_size=BULK_SIZE)
    _analyze_after_bulk_insert()
    batch.prompt_count = len(prompt_rows)
    batch.comparison_count = len(comparison_rows)
    batch.status = BatchStatus.ACTIVE
    batch.errors = []
    batch.finished_at = timezone.now()
    batch.save(
        update_fields=["prompt_count", "comparison_count", "status", "errors", "finished_at"]
    )
    logger.info(
        "batch %s imported: %s prompts, %s comparisons",
        batch.pk,
        batch.prompt_count,
        batch.comparison_count,
    )


LISTWISE_MIN, LISTWISE_MAX = 3, 8


def _check_listwise(prompts: list[ParsedPrompt]) -> None:
    """A listwise project ranks 3-8 responses per prompt, and has no gold items (yet)."""
    errors = []
    for prompt in prompts:
        count = len(prompt.candidates)
        if not LISTWISE_MIN <= count <= LISTWISE_MAX:
            errors.append(
                LineError(
                    prompt.line,
                    f"this project ranks {LISTWISE_MIN} to {LISTWISE_MAX} responses per prompt; "
                    f"this prompt has {count}",
                )
            )
        elif prompt.gold_preferred or prompt.gold_outcome:
            errors.append(LineError(prompt.line, "a listwise project takes no gold items"))
    if errors:
        raise ImportFormatError(errors)


def _gold_answer(prompt: ParsedPrompt, a: str, b: str) -> str:
    """The gold answer of the pair (a, b) of a gold prompt, oriented to a and b; "" if none.

    A preferred candidate makes every pair it is in a gold item; pairs without it are ordinary.
    "tie" and "both_bad" make every pair of the prompt a gold item with that answer.
    """
    if prompt.gold_outcome:
        return prompt.gold_outcome
    if prompt.gold_preferred == a:
        return GoldAnswer.A
    if prompt.gold_preferred == b:
        return GoldAnswer.B
    return ""


def _analyze_after_bulk_insert() -> None:
    """Refreshes PostgreSQL's statistics after a bulk insert.

    Until then the planner may take the queue's pick for a full scan and sort; autovacuum only
    catches up a minute or more later, and not at all where it is off.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for model in (Prompt, Candidate, Comparison):
                cursor.execute(f"ANALYZE {model._meta.db_table}")


def _reject_existing_ids(project: Project, prompts: list[ParsedPrompt]) -> None:
    line_of = {p.external_id: p.line for p in prompts}
    ids = list(line_of)
    existing: list[tuple[str, int]] = []
    for start in range(0, len(ids), 5000):
        existing.extend(
            Prompt.objects.filter(
                project=project, external_id__in=ids[start : start + 5000]
            ).values_list("external_id", "batch_id")
        )
    if existing:
        errors = sorted(
            (
                LineError(
                    line_of[external_id],
                    f"duplicate prompt id {external_id!r}: already in this project (batch "
                    f"{batch_id})",
                )
                for external_id, batch_id in existing
            ),
            key=lambda e: e.line or 0,
        )
        limit = settings.IMPORT_MAX_REPORTED_ERRORS
        raise ImportFormatError(errors[:limit], total=len(errors))
