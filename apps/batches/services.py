"""Importing batches. The command, the admin form and the REST API all call `batch_import`."""

import functools
import io
import logging
from collections.abc import Callable
from itertools import combinations
from math import comb
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotate.broker import BrokerUnavailable, broker_check, send_task
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
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
    try:
        prompts = parse_jsonl(source, max_errors=settings.IMPORT_MAX_REPORTED_ERRORS)
        with transaction.atomic():
            batch = Batch.objects.create(
                project=project, name=name, status=BatchStatus.IMPORTING, created_by=created_by
            )
            _audit_import_started(batch, size=size, background=False)
            _batch_store(batch=batch, prompts=prompts)
    except ImportFormatError as exc:
        # Nothing was stored, not even the batch: the record names the file instead.
        audit_record(
            actor=created_by,
            action=AuditAction.IMPORT_FAILED,
            project=project,
            details={"name": name, "bytes": size, **_errors_summary(exc.errors, exc.total)},
        )
        raise
    return batch


def _audit_import_started(batch: Batch, *, size: int, background: bool) -> None:
    audit_record(
        actor=batch.created_by,
        action=AuditAction.IMPORT_STARTED,
        project=batch.project,
        target=batch,
        details={"name": batch.name, "bytes": size, "background": background},
    )


def _errors_summary(errors: list[LineError], total: int | None) -> dict[str, Any]:
    return {
        "errors": max(total or 0, len(errors)),
        "first_errors": [error.as_dict() for error in errors[:5]],
    }


def _batch_import_enqueue(
    *, project: Project, source: IO[bytes], name: str, created_by: User | None
) -> Batch:
    # Refused (503) before anything is stored while the broker is gone: see annotate/broker.py.
    broker_check()
    data = source.read()
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            name=name,
            status=BatchStatus.IMPORTING,
            created_by=created_by,
            rows_total=data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0),
        )
        BatchSource.objects.create(batch=batch, data=data)
        _audit_import_started(batch, size=len(data), background=True)
        transaction.on_commit(functools.partial(_batch_import_send, batch.pk))
    return batch


def _batch_import_send(batch_id: int) -> None:
    """Sends a stored import to the workers, or deletes it and raises BrokerUnavailable."""
    from apps.batches.tasks import batch_import_task

    try:
        send_task(batch_import_task, batch_id)
    except BrokerUnavailable:
        with transaction.atomic():
            BatchSource.objects.filter(batch_id=batch_id).delete()
            Batch.objects.filter(pk=batch_id, status=BatchStatus.IMPORTING).delete()
        raise


# A background import reports its progress twice over. While it checks the file, outside any
# transaction, it writes the lines checked to the batch row (rows_done of rows_total), which
# every process can read. While it stores the rows, inside the transaction that makes the batch
# whole or not at all, the row cannot show anything to others; the rows stored go to the cache
# (Redis, where there is a worker) under this key instead.
STORE_PROGRESS_KEY = "batch-import-stored:{}"


def batch_import_stored(*, batch_id: int) -> Batch:
    """Imports the stored file of a background batch. Running it twice is harmless.

    The file is checked before the batch row is locked, so that the lines checked can be written
    to it as the check goes; then the batch is locked, looked at again (another run may have
    finished it meanwhile) and stored in one transaction.
    """
    batch = Batch.objects.get(pk=batch_id)
    if batch.status != BatchStatus.IMPORTING:
        return batch
    source = BatchSource.objects.filter(batch=batch).first()
    problem: ImportFormatError | None = None
    prompts: list[ParsedPrompt] = []
    if source is None:
        problem = ImportFormatError([LineError(None, "the uploaded file was not found")])
    else:

        def checked(lines: int) -> None:
            Batch.objects.filter(pk=batch_id, status=BatchStatus.IMPORTING).update(rows_done=lines)

        try:
            prompts = parse_jsonl(
                io.BytesIO(bytes(source.data)),
                max_errors=settings.IMPORT_MAX_REPORTED_ERRORS,
                progress=checked,
            )
        except ImportFormatError as exc:
            problem = exc
    key = STORE_PROGRESS_KEY.format(batch_id)
    try:
        with transaction.atomic():
            batch = Batch.objects.select_for_update().get(pk=batch_id)
            if batch.status != BatchStatus.IMPORTING:
                return batch
            if problem is None:
                try:
                    with transaction.atomic():
                        _batch_store(
                            batch=batch,
                            prompts=prompts,
                            progress=lambda done, total: cache.set(key, [done, total], 3600),
                        )
                except ImportFormatError as exc:
                    problem = exc
            if problem is not None:
                _batch_fail(batch, problem.errors, total=problem.total)
            BatchSource.objects.filter(batch=batch).delete()
    finally:
        cache.delete(key)
    return batch


def batch_import_progress(batch: Batch) -> dict[str, Any]:
    """Where a background import is: {"phase", "done", "total", "percent"}.

    Phases: "queued" (no worker has started), "checking" (lines checked of the file's lines),
    "storing" (rows stored of the rows to store), and "finished" once the batch has left
    `importing`. Checking counts as the first half of the bar, storing as the second.
    """
    if batch.status != BatchStatus.IMPORTING:
        return {"phase": "finished", "done": 0, "total": 0, "percent": 100}
    stored = cache.get(STORE_PROGRESS_KEY.format(batch.pk))
    if stored:
        done, total = stored
        return {
            "phase": "storing",
            "done": done,
            "total": total,
            "percent": 50 + (50 * done // total if total else 0),
        }
    if not batch.rows_done:
        return {"phase": "queued", "done": 0, "total": batch.rows_total, "percent": 0}
    total = max(batch.rows_total, batch.rows_done)
    return {
        "phase": "checking",
        "done": batch.rows_done,
        "total": total,
        "percent": 50 * batch.rows_done // total,
    }


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
    audit_record(
        actor=batch.created_by,
        action=AuditAction.IMPORT_FAILED,
        project=batch.project,
        target=batch,
        details={"name": batch.name, **_errors_summary(errors, total)},
    )
    return batch


def _batch_store(
    *,
    batch: Batch,
    prompts: list[ParsedPrompt],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Stores parsed prompts, their candidates and every pair of candidates, in bulk; in a
    listwise project, one comparison per prompt that ranks all of its candidates.

    `progress`, if given, is called with (rows stored, rows to store) after each bulk insert.
    """
    project = batch.project
    listwise = project.scheme == Scheme.LISTWISE
    if listwise:
        _check_listwise(prompts)
    _reject_existing_ids(project, prompts)
    candidate_total = sum(len(p.candidates) for p in prompts)
    comparison_total = (
        len(prompts) if listwise else sum(comb(len(p.candidates), 2) for p in prompts)
    )
    to_store = len(prompts) + candidate_total + comparison_total
    stored = 0

    def bulk(model: Any, rows: list[Any]) -> None:
        nonlocal stored
        for start in range(0, len(rows), BULK_SIZE):
            chunk = rows[start : start + BULK_SIZE]
            model.objects.bulk_create(chunk)
            stored += len(chunk)
            if progress is not None:
                progress(stored, to_store)

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
            bulk(Prompt, prompt_rows)
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
    bulk(Candidate, candidate_rows)
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
    bulk(Comparison, comparison_rows)
    _analyze_after_bulk_insert()
    batch.prompt_count = len(prompt_rows)
    batch.comparison_count = len(comparison_rows)
    batch.status = BatchStatus.ACTIVE
    batch.errors = []
    batch.finished_at = timezone.now()
    if not batch.rows_total:
        batch.rows_total = prompts[-1].line if prompts else 0
    batch.rows_done = batch.rows_total
    batch.save(
        update_fields=[
            "prompt_count",
            "comparison_count",
            "status",
            "errors",
            "finished_at",
            "rows_total",
            "rows_done",
        ]
    )
    audit_record(
        actor=batch.created_by,
        action=AuditAction.IMPORT_FINISHED,
        project=project,
        target=batch,
        details={
            "name": batch.name,
            "prompts": batch.prompt_count,
            "comparisons": batch.comparison_count,
        },
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


class BatchActionError(Exception):
    """A batch action that does not apply to the batch as it is; the message is for the lead."""


# action -> (the statuses it applies to, the status it sets)
BATCH_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "activate": (frozenset({BatchStatus.DRAFT, BatchStatus.DONE}), BatchStatus.ACTIVE),
    "pause": (frozenset({BatchStatus.ACTIVE}), BatchStatus.PAUSED),
    "resume": (frozenset({BatchStatus.PAUSED}), BatchStatus.ACTIVE),
    "close": (
        frozenset({BatchStatus.DRAFT, BatchStatus.ACTIVE, BatchStatus.PAUSED}),
        BatchStatus.DONE,
    ),
}
# The statuses a lead may set by hand, in the batch's form: the others belong to the import.
SETTABLE_STATUSES = (BatchStatus.DRAFT, BatchStatus.ACTIVE, BatchStatus.PAUSED, BatchStatus.DONE)

Actor = User | AnonymousUser | None


def batch_action(*, batch: Batch, action: str, by: Actor) -> Batch:
    """Activates (a draft or closed batch), pauses, resumes or closes a batch.

    Only active batches hand out comparisons. Leases already given out on a paused or closed
    batch stay valid until they expire or are answered. Raises BatchActionError when the action
    does not apply to the batch's status.
    """
    if action not in BATCH_ACTIONS:
        raise BatchActionError(f"Unknown action {action!r}; use one of {', '.join(BATCH_ACTIONS)}.")
    allowed, new = BATCH_ACTIONS[action]
    with transaction.atomic():
        current = Batch.objects.select_for_update().select_related("project").get(pk=batch.pk)
        if current.status not in allowed:
            raise BatchActionError(
                f"{current} is {current.get_status_display().lower()}: it cannot {action} "
                f"(only a batch that is {' or '.join(sorted(allowed))} can)."
            )
        _status_set(current, new, by=by, action=action)
    batch.status = current.status
    return current


def batch_status_set(*, batch: Batch, status: str, by: Actor) -> bool:
    """Sets a batch's status directly (the batch's form), within SETTABLE_STATUSES.

    A batch still importing, or whose import failed, keeps its status. Returns whether it changed.
    """
    if status not in SETTABLE_STATUSES:
        raise BatchActionError(f"A batch can be set to {', '.join(SETTABLE_STATUSES)} only.")
    with transaction.atomic():
        current = Batch.objects.select_for_update().select_related("project").get(pk=batch.pk)
        if current.status == status:
            return False
        if current.status not in SETTABLE_STATUSES:
            raise BatchActionError(
                f"{current} is {current.get_status_display().lower()}: its status is the import's."
            )
        _status_set(current, status, by=by, action="set")
    batch.status = status
    return True


def _status_set(batch: Batch, status: str, *, by: Actor, action: str) -> None:
    old = batch.status
    batch.status = status
    batch.save(update_fields=["status"])
    audit_record(
        actor=by,
        action=AuditAction.BATCH_STATUS,
        project=batch.project,
        target=batch,
        details={"action": action, "status": {"old": old, "new": status}},
    )


def batch_priority_set(*, batch: Batch, priority: int, by: Actor) -> bool:
    """Sets a batch's priority (higher is served first). Returns whether it changed."""
    with transaction.atomic():
        current = Batch.objects.select_for_update().select_related("project").get(pk=batch.pk)
        if current.priority == priority:
            return False
        old = current.priority
        current.priority = priority
        current.save(update_fields=["priority"])
        audit_record(
            actor=by,
            action=AuditAction.BATCH_PRIORITY,
            project=current.project,
            target=current,
            details={"priority": {"old": old, "new": priority}},
        )
    batch.priority = priority
    return True


def batch_reclaim_expired(*, batch: Batch, by: Actor) -> int:
    """Returns every expired lease of the batch's project to the pool now, without waiting for
    the beat sweep. Returns how many leases were reclaimed."""
    from apps.judging.services import leases_reclaim_expired

    total = 0
    while reclaimed := leases_reclaim_expired(project_id=batch.project_id):
        total += reclaimed
    audit_record(
        actor=by,
        action=AuditAction.LEASES_RECLAIMED,
        project=batch.project,
        target=batch,
        details={"reclaimed": total},
    )
    return total
