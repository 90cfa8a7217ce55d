"""Importing batches. The command, the admin form and the REST API all call `batch_import`."""

import contextlib
import functools
import io
import json
import logging
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import combinations, islice
from math import comb
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    reset_queries,
    transaction,
)
from django.db.models import Count, F, ProtectedError, Q, QuerySet
from django.utils import timezone

from annotate.broker import BrokerUnavailable, broker_check, send_task
from annotate.db import postgresql
from annotate.errors import Conflict
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.audit import audit_sample_mark
from apps.batches.honeypots import Honeypot, HoneypotMaker, honeypot_seed
from apps.batches.import_format import (
    CANDIDATES_OPTIONAL_HINT,
    MIN_CANDIDATES,
    ImportFormatError,
    LineError,
    ParsedCandidate,
    ParsedPrompt,
    PromptStream,
)
from apps.batches.models import (
    Batch,
    BatchSource,
    BatchSourcePart,
    BatchStatus,
    Candidate,
    Comparison,
    GoldAnswer,
    Prompt,
    comparison_policy,
)
from apps.batches.selectors import LISTWISE_MAX, LISTWISE_MIN
from apps.batches.signals import batch_stored
from apps.projects.models import Project, Scheme

logger = logging.getLogger(__name__)

# Sent by name (annotate.broker.send_task): the tasks module imports this one.
IMPORT_TASK = "apps.batches.tasks.batch_import_task"


def batch_import(
    *,
    project: Project,
    source: IO[bytes],
    size: int,
    name: str = "",
    created_by: User | None = None,
    background: bool | None = None,
    candidates_optional: bool = False,
) -> Batch:
    """Imports a JSON Lines file as a new active batch, whole or not at all.

    Files larger than IMPORT_BACKGROUND_BYTES (or with background=True) are stored and imported by
    a Celery task: the batch is returned in status `importing` and ends `active` or `failed`.
    A bad file raises ImportFormatError with every error, and nothing is stored.

    With `candidates_optional` (kept on the batch, where a background run reads it), a prompt
    may come with fewer candidates than a comparison needs (candidates_needed), even none: it is
    stored without comparisons, and waits for its responses to be generated (apps.generation).
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
            project=project,
            source=source,
            name=name,
            created_by=created_by,
            candidates_optional=candidates_optional,
        )
    totals = _Totals(project.scheme == Scheme.LISTWISE)
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                project=project,
                name=name,
                status=BatchStatus.IMPORTING,
                created_by=created_by,
                candidates_optional=candidates_optional,
            )
            _audit_import_started(batch, size=size, background=False)
            _batch_store(
                batch=batch,
                prompts=_checked_prompts(
                    project, source, totals, candidates_optional=candidates_optional
                ),
                totals=totals,
            )
    except ImportFormatError as exc:
        # Nothing was stored, not even the batch: the record names the file instead.
        audit_record(
            actor=created_by,
            action=AuditAction.IMPORT_FAILED,
            project=project,
            details={
                "name": name,
                "bytes": size,
                **_option_details(candidates_optional),
                **_errors_summary(exc.errors, exc.total),
            },
        )
        raise
    return batch


# How an import reads its file: as a stream, never whole.
#
# A foreground import (the command, a small upload) reads it once: each good prompt goes to the
# store as it is read, in the transaction that makes the batch whole or not at all, while the
# rest of the file is checked. Every error is collected (once the file has one, nothing more is
# written, only checked); at the end a bad file raises ImportFormatError and the transaction
# takes back what was written.
#
# A background import reads it twice. The first pass (the check) reads every line, collects
# every error and looks for prompt ids already in the project; it stores no row, holds no lock,
# and writes its progress and heartbeat to the batch row (a cancel still works while it runs).
# The second pass (the store) reads the file again and writes the rows in one transaction that
# holds the batch row's lock.
#
# Either way the store writes a chunk of prompts at a time: on PostgreSQL with COPY, from a
# thread of its own (_Sink), so that the server stores one chunk while this thread reads the
# next; elsewhere with bulk inserts. Before writing a chunk it looks for its prompt ids in the
# project (the background check did too, but another import may have committed them since).
# The texts are rendered for the judging page after the rows are committed, by a task of their
# own (apps/judging/rendering.py): the import does not wait for the Markdown parser.
#
# Prompts checked against the project's ids (one query) at once by the background check; then
# the progress (and heartbeat) is written.
CHECK_CHUNK = 100
STORE_CHUNK_ROWS = 2000  # about this many rows (prompts + candidates + comparisons) a write


def _forget_queries() -> None:
    """With DEBUG on, Django logs every query's SQL (up to 9,000 of them): an import would keep
    megabytes of it. Left alone while a test captures the queries (force_debug_cursor)."""
    if not connection.force_debug_cursor:
        reset_queries()


def _comparisons_of(candidates: int, listwise: bool) -> int:
    """How many comparisons the import forms for a prompt with this many candidates: every pair,
    or one ranking of them all; none while it has fewer than a comparison needs (a prompt of a
    batch imported with candidates optional, waiting for its responses)."""
    if listwise:
        return 1 if candidates >= LISTWISE_MIN else 0
    return comb(candidates, 2)


class _Totals:
    """What a checked file holds: the rows the store writes, the prompts left waiting for
    candidates (fewer than a comparison needs), and the file's last line."""

    def __init__(self, listwise: bool) -> None:
        self.listwise = listwise
        self.needed = LISTWISE_MIN if listwise else MIN_CANDIDATES
        self.prompts = self.candidates = self.comparisons = self.last_line = 0
        self.awaiting = 0

    def add(self, prompt: ParsedPrompt) -> None:
        count = len(prompt.candidates)
        self.prompts += 1
        self.candidates += count
        self.comparisons += _comparisons_of(count, self.listwise)
        self.awaiting += count < self.needed
        self.last_line = prompt.line

    @property
    def rows(self) -> int:
        return self.prompts + self.candidates + self.comparisons


def _prompt_stream(
    project: Project, stream: IO[bytes] | Iterable[bytes], *, candidates_optional: bool = False
) -> PromptStream:
    listwise = project.scheme == Scheme.LISTWISE
    return PromptStream(
        stream,
        max_errors=settings.IMPORT_MAX_REPORTED_ERRORS,
        max_text_chars=settings.IMPORT_MAX_TEXT_CHARS,
        extra_check=(
            functools.partial(_listwise_problem, candidates_optional=candidates_optional)
            if listwise
            else None
        ),
        candidates_optional=candidates_optional,
    )


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _check_file(
    project: Project,
    stream: IO[bytes] | Iterable[bytes],
    progress: Callable[[int], None] | None = None,
    *,
    candidates_optional: bool = False,
) -> _Totals:
    """The first pass: checks the whole file; returns what it holds, or
    raises ImportFormatError with every error (the file's own, then the project's rules, then
    ids already in the project: as each is found only when there is none of the one before)."""
    # Progress is the lines whose prompts were checked, reported after each chunk.
    prompts = _prompt_stream(project, stream, candidates_optional=candidates_optional)
    totals = _Totals(project.scheme == Scheme.LISTWISE)
    limit = settings.IMPORT_MAX_REPORTED_ERRORS
    existing: list[LineError] = []
    existing_count = 0
    for chunk in _chunks(prompts, CHECK_CHUNK):
        _forget_queries()
        if prompts.failed:
            if progress is not None:
                progress(prompts.lines)
            continue  # the file is refused: only its errors are wanted now
        found = _existing_id_errors(project, chunk)
        existing_count += len(found)
        existing.extend(found[: max(0, limit - len(existing))])
        for prompt in chunk:
            totals.add(prompt)
        if progress is not None:
            progress(prompts.lines)
    prompts.raise_errors()
    if existing_count:
        raise ImportFormatError(existing, total=existing_count)
    return totals


def _prompts_to_store(
    stream: IO[bytes] | Iterable[bytes], *, candidates_optional: bool = False
) -> Iterator[ParsedPrompt]:
    """The second pass: the prompts of a file the first pass found good."""
    prompts = PromptStream(
        stream,
        max_text_chars=settings.IMPORT_MAX_TEXT_CHARS,
        candidates_optional=candidates_optional,
    )
    yield from prompts
    # The same bytes were checked a moment ago: only a file changed in between gets here.
    prompts.raise_errors()


def _checked_prompts(
    project: Project,
    stream: IO[bytes] | Iterable[bytes],
    totals: "_Totals",
    *,
    candidates_optional: bool = False,
) -> Iterator[ParsedPrompt]:
    """One pass (a foreground import): the good prompts of a file as it is read, counted in
    `totals`, until the file shows an error; the rest is only checked. At the end, raises
    ImportFormatError with every error of the file and of the project's rules (_check_file's
    order): the store's transaction then takes back what it wrote. The store looks for the ids
    already in the project itself, a chunk at a time (_RowWriter.store)."""
    prompts = _prompt_stream(project, stream, candidates_optional=candidates_optional)
    for prompt in prompts:
        if prompts.failed:
            continue  # the file is refused: only its errors are wanted now
        totals.add(prompt)
        yield prompt
    prompts.raise_errors()


def _audit_import_started(batch: Batch, *, size: int, background: bool) -> None:
    audit_record(
        actor=batch.created_by,
        action=AuditAction.IMPORT_STARTED,
        project=batch.project,
        target=batch,
        details={
            "name": batch.name,
            "bytes": size,
            "background": background,
            **_option_details(batch.candidates_optional),
        },
    )


def _option_details(candidates_optional: bool) -> dict[str, Any]:
    """The import's options in its audit records: only those that are on."""
    return {"candidates_optional": True} if candidates_optional else {}


def _errors_summary(errors: list[LineError], total: int | None) -> dict[str, Any]:
    return {
        "errors": max(total or 0, len(errors)),
        "first_errors": [error.as_dict() for error in errors[:5]],
    }


def _batch_import_enqueue(
    *,
    project: Project,
    source: IO[bytes],
    name: str,
    created_by: User | None,
    candidates_optional: bool = False,
) -> Batch:
    # Refused (503) before anything is stored while the broker is gone: see annotate/broker.py.
    broker_check()
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            name=name,
            status=BatchStatus.IMPORTING,
            created_by=created_by,
            import_heartbeat_at=timezone.now(),
            # The run reads the file with the option it was uploaded with.
            candidates_optional=candidates_optional,
        )
        stored = BatchSource.objects.create(batch=batch, data=b"")
        # The file goes in a piece at a time, and so it is read back: never whole in memory.
        size = lines = index = 0
        last = b""
        while block := source.read(SOURCE_PART_BYTES):
            _forget_queries()
            BatchSourcePart.objects.create(source=stored, index=index, data=block)
            size += len(block)
            lines += block.count(b"\n")
            last = block[-1:]
            index += 1
        batch.rows_total = lines + (1 if size and last != b"\n" else 0)
        batch.save(update_fields=["rows_total"])
        _audit_import_started(batch, size=size, background=True)
        transaction.on_commit(functools.partial(_batch_import_send, batch.pk))
    return batch


SOURCE_PART_BYTES = 4 * 1024 * 1024


def _source_lines(batch_id: int) -> Callable[[], Iterator[bytes]] | None:
    """A function that reads a stored upload's lines from its start, a part at a time; None if
    the upload is gone. A part that disappears meanwhile (a cancel or a delete) stops the run."""
    source = BatchSource.objects.filter(batch_id=batch_id).defer("data").first()
    if source is None:
        return None

    def part(pk: int) -> bytes:
        data = BatchSourcePart.objects.filter(pk=pk).values_list("data", flat=True).first()
        if data is None:
            raise ImportSuperseded()
        return bytes(data)

    def lines() -> Iterator[bytes]:
        parts = list(
            BatchSourcePart.objects.filter(source=source)
            .order_by("index")
            .values_list("pk", flat=True)
        )
        if not parts:  # stored whole (before uploads were stored in parts)
            data = BatchSource.objects.filter(pk=source.pk).values_list("data", flat=True).first()
            if data is None:
                raise ImportSuperseded()
            yield from io.BytesIO(bytes(data))
            return
        rest = b""
        for pk in parts:
            pieces = (rest + part(pk)).split(b"\n")
            rest = pieces.pop()
            yield from pieces
        if rest:
            yield rest

    return lines


def _batch_import_send(batch_id: int) -> None:
    """Sends a stored import to the workers, or deletes it and raises BrokerUnavailable."""
    try:
        send_task(IMPORT_TASK, batch_id)
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

# Running a background import. A batch being imported is `importing`, first waiting for a worker
# (import_running false; import_heartbeat_at says when its task was last sent), then held by a
# run. A run starts only by a conditional UPDATE (the claim) that sets import_running and bumps
# import_attempts; every later write of the run (its heartbeat with the lines checked, the store)
# is conditional on the batch still being importing and running under that attempt number. A
# duplicate delivery of the task (acks_late) finds the batch held by a live run, or no longer
# importing, and does nothing; a run that was superseded (re-queued by the sweep, cancelled,
# deleted) notices at its next progress write and stops.
#
# The rows are stored in one transaction that holds the batch row's lock from start to end: a
# run killed mid-store leaves nothing (PostgreSQL rolls the transaction back when the connection
# drops), and the next attempt starts from the file again. Meanwhile the sweep, which skips
# locked rows, leaves a batch being stored alone, and a cancel is refused.
#
# The beat sweep (`batch_imports_sweep`) re-sends an import that has waited IMPORT_STALE_AFTER
# seconds for a worker (its message was lost), and re-queues a running one whose heartbeat is that
# old (its worker died) while attempts < IMPORT_MAX_ATTEMPTS, or marks it failed with the reason.


class ImportSuperseded(Conflict):
    """This run no longer holds the import (re-queued, claimed again, cancelled or deleted)."""


def _import_stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.IMPORT_STALE_AFTER)


def _stale(now: datetime) -> Q:
    return Q(import_heartbeat_at__lt=_import_stale_before(now)) | Q(
        import_heartbeat_at__isnull=True
    )


def batch_import_claim(*, batch_id: int) -> int | None:
    """Gives the import to this run; returns the run's attempt number, or None when it is not
    this run's to take (no longer importing, or held by a run with a fresh heartbeat)."""
    now = timezone.now()
    claimable = Q(import_running=False) | Q(
        _stale(now), import_running=True, import_attempts__lt=settings.IMPORT_MAX_ATTEMPTS
    )
    with transaction.atomic():
        claimed = Batch.objects.filter(claimable, pk=batch_id, status=BatchStatus.IMPORTING).update(
            import_running=True,
            import_attempts=F("import_attempts") + 1,
            import_heartbeat_at=now,
            rows_done=0,
        )
        if not claimed:
            return None
        # A dead run's last "storing" figures (it could not clear them) are not this run's.
        cache.delete(STORE_PROGRESS_KEY.format(batch_id))
        return int(Batch.objects.values_list("import_attempts", flat=True).get(pk=batch_id))


def _held(batch_id: int, attempt: int) -> QuerySet[Batch]:
    return Batch.objects.filter(
        pk=batch_id,
        status=BatchStatus.IMPORTING,
        import_running=True,
        import_attempts=attempt,
    )


def batch_import_stored(*, batch_id: int) -> str:
    """Imports the stored file of a background batch, if this run may claim it; returns the
    batch's status afterwards ("" when it was deleted). Running it twice is harmless.

    The file is checked before the batch row is locked, so that the lines checked (and the
    heartbeat) can be written to it as the check goes; then the batch is locked, looked at again
    (another run may have taken it meanwhile) and stored in one transaction.
    """
    attempt = batch_import_claim(batch_id=batch_id)
    if attempt is None:
        status = Batch.objects.filter(pk=batch_id).values_list("status", flat=True).first()
        logger.info("import of batch %s not claimed (status %s): nothing to do", batch_id, status)
        return str(status or "")
    try:
        return _batch_import_attempt(batch_id, attempt)
    except ImportSuperseded:
        status = Batch.objects.filter(pk=batch_id).values_list("status", flat=True).first()
        if status is None or status == BatchStatus.CANCELLED:
            logger.info(
                "import of batch %s attempt %s was %s; stopped",
                batch_id,
                attempt,
                "deleted" if status is None else "cancelled",
            )
        else:
            logger.warning(
                "import of batch %s attempt %s was superseded; stopped", batch_id, attempt
            )
        return str(status or "")


def _batch_import_attempt(batch_id: int, attempt: int) -> str:
    delay = settings.IMPORT_TEST_DELAY_MS / 1000

    def checked(lines: int) -> None:
        if not _held(batch_id, attempt).update(rows_done=lines, import_heartbeat_at=timezone.now()):
            raise ImportSuperseded()
        if delay:
            time.sleep(delay)  # the test hook (IMPORT_TEST_DELAY_MS)

    read_lines = _source_lines(batch_id)
    project = Project.objects.filter(batches__pk=batch_id).first()
    # The option the file was uploaded with (batch_import), kept on the batch for this run.
    optional = bool(
        Batch.objects.filter(pk=batch_id).values_list("candidates_optional", flat=True).first()
    )
    problem: ImportFormatError | None = None
    totals: _Totals | None = None
    if read_lines is None or project is None:
        problem = ImportFormatError([LineError(None, "the uploaded file was not found")])
    else:
        try:
            totals = _check_file(
                project, read_lines(), progress=checked, candidates_optional=optional
            )
        except ImportFormatError as exc:
            problem = exc
    key = STORE_PROGRESS_KEY.format(batch_id)

    def stored(done: int, total: int) -> None:
        cache.set(key, [done, total], 3600)
        if delay:
            time.sleep(delay)  # the test hook (IMPORT_TEST_DELAY_MS)

    try:
        with transaction.atomic():
            batch = _held(batch_id, attempt).select_for_update().first()
            if batch is None:
                raise ImportSuperseded()
            if problem is None:
                try:
                    assert read_lines is not None and totals is not None
                    with transaction.atomic():
                        _batch_store(
                            batch=batch,
                            prompts=_prompts_to_store(
                                read_lines(), candidates_optional=batch.candidates_optional
                            ),
                            totals=totals,
                            progress=stored,
                        )
                except ImportFormatError as exc:
                    problem = exc
            if problem is not None:
                _batch_fail(batch, problem.errors, total=problem.total)
            BatchSource.objects.filter(batch=batch).delete()
    finally:
        cache.delete(key)
    return str(batch.status)


def batch_import_progress(batch: Batch) -> dict[str, Any]:
    """Where a background import is: {"phase", "done", "total", "percent", "attempt",
    "max_attempts", "running", "note"}.

    Phases: "queued" (waiting for a worker: none has started, or the sweep re-queued it),
    "checking" (lines checked of the file's lines), "storing" (rows stored of the rows to store),
    and "finished" once the batch has left `importing`. Checking counts as the first half of the
    bar, storing as the second. `attempt` is the run's number (0 before the first), `note` why
    an earlier run was re-queued or the task sent again.
    """
    runs = {
        "attempt": batch.import_attempts,
        "max_attempts": settings.IMPORT_MAX_ATTEMPTS,
        "running": batch.import_running,
        "note": batch.import_note,
    }
    if batch.status != BatchStatus.IMPORTING:
        return {"phase": "finished", "done": 0, "total": 0, "percent": 100, **runs}
    stored = cache.get(STORE_PROGRESS_KEY.format(batch.pk))
    if stored:
        done, total = stored
        return {
            "phase": "storing",
            "done": done,
            "total": total,
            "percent": 50 + (50 * done // total if total else 0),
            **runs,
        }
    if not batch.rows_done and not batch.import_running:
        return {"phase": "queued", "done": 0, "total": batch.rows_total, "percent": 0, **runs}
    total = max(batch.rows_total, batch.rows_done, 1)
    return {
        "phase": "checking",
        "done": batch.rows_done,
        "total": total,
        "percent": 50 * batch.rows_done // total,
        **runs,
    }


def batch_import_abort(*, batch_id: int, reason: str) -> None:
    """Marks a background import failed for a reason that is not in the file."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is not None and batch.status == BatchStatus.IMPORTING:
            _batch_fail(batch, [LineError(None, reason)])
            BatchSource.objects.filter(batch=batch).delete()


def batch_imports_sweep(now: datetime | None = None) -> dict[str, int]:
    """Recovers background imports; returns how many it re-queued, failed and re-sent.

    - held by a run whose heartbeat is older than IMPORT_STALE_AFTER: its worker died (or
      hangs). Re-queued (and sent) while attempts < IMPORT_MAX_ATTEMPTS, else failed with the
      reason;
    - waiting for a worker for longer than IMPORT_STALE_AFTER: sent again, in case its message
      was lost (a duplicate delivery is harmless: the claim lets one run through).

    Batches whose row is locked are skipped: a run is storing their rows, in a transaction that
    either commits or, if its worker dies, is rolled back by PostgreSQL.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0}
    stale_for = settings.IMPORT_STALE_AFTER
    to_send: list[int] = []
    with transaction.atomic():
        dead = (
            Batch.objects.select_for_update(skip_locked=True)
            .filter(_stale(now), status=BatchStatus.IMPORTING, import_running=True)
            .order_by("id")
        )
        for batch in dead:
            # The dead run's last "storing" figures: it stored nothing (rolled back).
            cache.delete(STORE_PROGRESS_KEY.format(batch.pk))
            stopped = f"attempt {batch.import_attempts}"
            if batch.import_attempts < settings.IMPORT_MAX_ATTEMPTS:
                batch.import_running = False
                batch.import_note = (
                    f"{stopped} stopped (no heartbeat for {stale_for} s: its worker died or "
                    "hung); re-queued"
                )
                batch.import_heartbeat_at = now
                batch.rows_done = 0
                batch.save(
                    update_fields=[
                        "import_running",
                        "import_note",
                        "import_heartbeat_at",
                        "rows_done",
                    ]
                )
                counts["requeued"] += 1
                to_send.append(batch.pk)
            else:
                reason = (
                    f"the import stopped: {stopped} of {settings.IMPORT_MAX_ATTEMPTS} had no "
                    f"heartbeat for {stale_for} s (its worker died or hung), and no attempts "
                    "are left; upload the file again"
                )
                _batch_fail(batch, [LineError(None, reason)])
                BatchSource.objects.filter(batch=batch).delete()
                counts["failed"] += 1
        lost = (
            Batch.objects.select_for_update(skip_locked=True)
            .filter(_stale(now), status=BatchStatus.IMPORTING, import_running=False)
            .order_by("id")
        )
        for batch in lost:
            batch.import_heartbeat_at = now
            batch.import_note = (
                f"no worker took it within {stale_for} s; sent again at {now:%Y-%m-%d %H:%M} UTC"
            )
            batch.save(update_fields=["import_heartbeat_at", "import_note"])
            counts["resent"] += 1
            to_send.append(batch.pk)
        for batch_id in to_send:
            transaction.on_commit(functools.partial(send_task, IMPORT_TASK, batch_id))
    if any(counts.values()):
        logger.info("import sweep: %s", counts)
    return counts


def _batch_fail(batch: Batch, errors: list[LineError], total: int | None = None) -> Batch:
    batch.status = BatchStatus.FAILED
    batch.import_running = False
    batch.errors = [error.as_dict() for error in errors]
    if total is not None and total > len(errors):
        batch.errors.append({"line": None, "error": f"... and {total - len(errors)} more errors"})
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "import_running", "errors", "finished_at"])
    audit_record(
        actor=batch.created_by,
        action=AuditAction.IMPORT_FAILED,
        project=batch.project,
        target=batch,
        details={
            "name": batch.name,
            **_option_details(batch.candidates_optional),
            **_errors_summary(errors, total),
        },
    )
    return batch


def _batch_store(
    *,
    batch: Batch,
    prompts: Iterable[ParsedPrompt],
    progress: Callable[[int, int], None] | None = None,
    totals: _Totals | None = None,
) -> None:
    """Stores parsed prompts, their candidates and every pair of candidates, a chunk at a time;
    in a listwise project, one comparison per prompt that ranks all of its candidates. A prompt
    with fewer candidates than a comparison needs (candidates optional) gets none, and no
    honeypot: it waits for its responses.

    `totals` says what a checked file holds (_check_file); without it `prompts` is a list,
    checked here. `progress`, if given, is called with (rows stored, rows to store) after each
    chunk. On PostgreSQL the rows go in with COPY (_CopyWriter), elsewhere with bulk inserts.
    """
    project = batch.project
    listwise = project.scheme == Scheme.LISTWISE
    if totals is None:
        prompts = list(prompts)
        if listwise:
            _check_listwise(prompts, candidates_optional=batch.candidates_optional)
        _reject_existing_ids(project, prompts)
        totals = _Totals(listwise)
        for prompt in prompts:
            totals.add(prompt)
    writer: _RowWriter = (
        _CopyWriter(batch, listwise) if postgresql() else _BulkWriter(batch, listwise)
    )
    pending: list[ParsedPrompt] = []
    pending_rows = 0

    def report(sink: _Sink) -> None:
        if progress is not None:
            # The honeypots are drawn as the rows are written: the total grows with them.
            done = sink.written
            progress(done, max(done, totals.rows + writer.honeypots.count * 2))

    try:
        with transaction.atomic():
            sink = _Sink(writer, threaded=isinstance(writer, _CopyWriter))
            try:
                for prompt in prompts:
                    pending.append(prompt)
                    count = len(prompt.candidates)
                    pending_rows += 1 + count + _comparisons_of(count, listwise)
                    if pending_rows >= STORE_CHUNK_ROWS:
                        _forget_queries()
                        sink.put(pending)
                        pending, pending_rows = [], 0
                        report(sink)
                if pending:
                    sink.put(pending)
                sink.finish()
            finally:
                sink.stop()
            if writer.existing_count:
                raise ImportFormatError(writer.existing, total=writer.existing_count)
            writer.settle()
            report(sink)
            if project.audit_rate > 0:
                audit_sample_mark(project=project, batch=batch)
    except IntegrityError:
        # Another import took one of these ids between our check and our insert.
        if isinstance(prompts, list):
            _reject_existing_ids(project, prompts)
        raise ImportFormatError(
            [LineError(None, "prompt ids collided with a concurrent import; try again")]
        ) from None
    _analyze_after_bulk_insert()
    batch.prompt_count = totals.prompts
    batch.comparison_count = totals.comparisons + writer.honeypots.count
    batch.status = BatchStatus.ACTIVE
    batch.import_running = False
    batch.errors = []
    batch.finished_at = timezone.now()
    if not batch.rows_total:
        batch.rows_total = totals.last_line
    batch.rows_done = batch.rows_total
    batch.save(
        update_fields=[
            "prompt_count",
            "comparison_count",
            "status",
            "import_running",
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
            "honeypots": writer.honeypots.made,
            **(
                {"candidates_optional": True, "awaiting_candidates": totals.awaiting}
                if batch.candidates_optional
                else {}
            ),
        },
    )
    logger.info(
        "batch %s imported: %s prompts, %s comparisons (%s honeypots)",
        batch.pk,
        batch.prompt_count,
        batch.comparison_count,
        writer.honeypots.count,
    )
    transaction.on_commit(functools.partial(batch_stored.send, sender=Batch, batch_id=batch.pk))


def _candidates(
    prompt: ParsedPrompt, honeypot: Honeypot | None
) -> Iterator[tuple[ParsedCandidate, str]]:
    """The candidates to store for a prompt, with their degradation: its own, then its
    honeypot's degraded response, if it has one."""
    for candidate in prompt.candidates:
        yield candidate, ""
    if honeypot is not None:
        yield honeypot.candidate, honeypot.kind


def _pairs(
    prompt: ParsedPrompt,
    candidate_ids: list[int],
    listwise: bool,
    honeypot: Honeypot | None = None,
) -> Iterator[tuple[int, int, bool, str, list[int] | None]]:
    """The comparisons of a prompt whose candidates (`_candidates`) got these ids:
    (candidate_a, candidate_b, is_gold, gold_answer, candidate_ids); a honeypot's comparison,
    a gold item, comes last."""
    if listwise:
        if len(candidate_ids) >= LISTWISE_MIN:
            yield candidate_ids[0], candidate_ids[1], False, "", list(candidate_ids)
        return
    parsed = prompt.candidates
    for i, j in combinations(range(len(parsed)), 2):
        answer = _gold_answer(prompt, parsed[i].external_id, parsed[j].external_id)
        yield candidate_ids[i], candidate_ids[j], bool(answer), answer, None
    if honeypot is not None:
        a, b = honeypot.pair(candidate_ids[honeypot.source], candidate_ids[len(parsed)])
        yield a, b, True, honeypot.gold_answer, None


class _RowWriter:
    def __init__(self, batch: Batch, listwise: bool) -> None:
        self.batch = batch
        self.project = batch.project
        self.listwise = listwise
        # Listwise projects take no gold items, and so no honeypots (Project.clean refuses it).
        self.honeypots = HoneypotMaker(
            rate=0.0 if listwise else self.project.honeypot_rate, seed=honeypot_seed(batch.pk)
        )
        # The file's prompts whose ids are already in the project (the first of them, and how
        # many): once there is one, chunks are only looked up, no longer written.
        self.existing: list[LineError] = []
        self.existing_count = 0
        # The policy the rows carry (Comparison.policy); settle() follows a change made since.
        self.policy = comparison_policy(self.project.pk)

    def store(self, prompts: list[ParsedPrompt]) -> int:
        """Stores a chunk of prompts unless one of the file's ids is already in the project;
        returns the rows written."""
        if self.refused(_existing_id_errors(self.project, prompts)):
            return 0
        return self.write(prompts)

    def refused(self, found: list[LineError]) -> bool:
        """Keeps the errors of the ids found already in the project; whether the chunk must not
        be written (once one is found, no chunk is)."""
        self.existing_count += len(found)
        room = max(0, settings.IMPORT_MAX_REPORTED_ERRORS - len(self.existing))
        self.existing.extend(found[:room])
        return bool(self.existing_count)

    def write(self, prompts: list[ParsedPrompt]) -> int:
        """Stores the prompts with their candidates and comparisons; returns the rows written."""
        raise NotImplementedError

    def settle(self) -> None:
        """After the last row, in the import's transaction: holds the project's row until the
        commit (comparison_policy), and if its policy changed while the rows were written (that
        change's update of the project's comparisons could not see them), gives them the new
        one. A change after this waits for the commit, and then sees them."""
        policy = comparison_policy(self.project.pk, hold=True)
        if policy != self.policy:
            Comparison.objects.filter(batch=self.batch).exclude(policy=policy).update(policy=policy)
            self.policy = policy


class _Sink:
    """Hands the store's chunks to its writer: on a thread of its own (threaded), so that the
    server writes one chunk while the caller reads and checks the next, or in the caller's
    thread.

    One connection and one transaction either way: the writing thread uses the caller's
    connection (Django's thread sharing), and the caller does not touch the database between
    the first put() and stop(). An error of the writer is raised in the caller by the next
    put() or by finish(). At most DEPTH chunks wait: memory stays bounded.
    """

    DEPTH = 2

    def __init__(self, writer: _RowWriter, *, threaded: bool) -> None:
        self.writer = writer
        self.written = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        if threaded:
            self._db = connections[DEFAULT_DB_ALIAS]  # this thread's: the transaction's
            self._queue: queue.Queue[list[ParsedPrompt] | None] = queue.Queue(self.DEPTH)
            self._db.inc_thread_sharing()
            self._thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None and not self._stopping:
                try:
                    self.written += self.writer.store(chunk)
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, prompts: list[ParsedPrompt]) -> None:
        self._raise()
        if self._thread is None:
            self.written += self.writer.store(prompts)
        else:
            self._queue.put(prompts)

    def finish(self) -> None:
        """Waits for every chunk to be written; raises the writer's error, if any."""
        self._join()
        self._raise()

    def stop(self) -> None:
        """Ends the writing thread, dropping the chunks not yet written (after an error)."""
        self._stopping = True
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._db.dec_thread_sharing()


class _BulkWriter(_RowWriter):
    """Bulk inserts (SQLite): the database hands back each row's id."""

    def write(self, prompts: list[ParsedPrompt]) -> int:
        project, batch = self.project, self.batch
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
        Prompt.objects.bulk_create(prompt_rows)
        honeypots = [self.honeypots.make(p) for p in prompts]
        candidate_rows = [
            Candidate(
                prompt=row,
                external_id=c.external_id,
                text=c.text,
                model=c.model,
                params=c.params,
                metadata=c.metadata,
                degradation=degradation,
            )
            for row, parsed, honeypot in zip(prompt_rows, prompts, honeypots, strict=True)
            for c, degradation in _candidates(parsed, honeypot)
        ]
        Candidate.objects.bulk_create(candidate_rows)
        comparison_rows: list[Comparison] = []
        position = 0
        for row, parsed, honeypot in zip(prompt_rows, prompts, honeypots, strict=True):
            count = len(parsed.candidates) + (honeypot is not None)
            ids = [c.pk for c in candidate_rows[position : position + count]]
            position += count
            for a, b, is_gold, answer, ranked in _pairs(parsed, ids, self.listwise, honeypot):
                comparison_rows.append(
                    Comparison(
                        project=project,
                        batch=batch,
                        prompt=row,
                        candidate_a_id=a,
                        candidate_b_id=b,
                        is_gold=is_gold,
                        gold_answer=answer,
                        candidate_ids=ranked,
                        policy=self.policy,
                    )
                )
        Comparison.objects.bulk_create(comparison_rows)
        return len(prompt_rows) + len(candidate_rows) + len(comparison_rows)


def _json(value: Any) -> str:
    if value == {}:
        return "{}"  # most candidates' params and metadata: no encoder needed
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _CopyWriter(_RowWriter):
    """COPY (PostgreSQL). Prompts and candidates are referred to by the rows after them, so their
    ids are taken from their tables' sequences first, with nextval: a concurrent import (or any
    insert) takes others, never the same. Comparisons take theirs as COPY writes them.

    Every column is written (Django's field defaults are not the database's); a NOT NULL
    column added to a model later gets its field's default here, or fails loudly if it has none.
    """

    def __init__(self, batch: Batch, listwise: bool) -> None:
        super().__init__(batch, listwise)
        # The caller's connection (and transaction), which the writing thread uses (_Sink).
        self.db = connections[DEFAULT_DB_ALIAS]
        # The queue's random order within a level: not a secret, only a spread.
        self.rank = random.Random(secrets.randbits(64))  # noqa: S311
        with self.db.cursor() as cursor:
            # Check the rows' foreign keys as each COPY ends, not all at once at the commit: the
            # same work, but done while the progress bar counts the rows, and not after it.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # The project (PROTECT) and the batch must outlive this transaction: hold them. The
            # comparisons' references have no constraint in the database (Comparison): this hold,
            # and the prompts and candidates being this transaction's own, are what keep them.
            cursor.execute(
                f"SELECT 1 FROM {Project._meta.db_table} WHERE id = %s FOR KEY SHARE",  # noqa: S608
                [self.project.pk],
            )
            cursor.execute(
                f"SELECT 1 FROM {Batch._meta.db_table} WHERE id = %s FOR KEY SHARE",  # noqa: S608
                [batch.pk],
            )
        self.prompt_columns, self.prompt_fixed = _copy_columns(
            Prompt, ["id", "project", "batch", "external_id", "content", "metadata"]
        )
        self.candidate_columns, self.candidate_fixed = _copy_columns(
            Candidate,
            ["id", "prompt", "external_id", "text", "model", "params", "metadata", "degradation"],
        )
        self.comparison_columns, self.comparison_fixed = _copy_columns(
            Comparison,
            [
                "project",
                "batch",
                "prompt",
                "candidate_a",
                "candidate_b",
                "is_gold",
                "gold_answer",
                "candidate_ids",
                "rank",
                "policy",
            ],
        )
        self.prompt_copy = _copy_sql(Prompt, self.prompt_columns)
        self.candidate_copy = _copy_sql(Candidate, self.candidate_columns)
        self.comparison_copy = _copy_sql(Comparison, self.comparison_columns)
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT pg_get_serial_sequence(%s, 'id'), pg_get_serial_sequence(%s, 'id')",
                [Prompt._meta.db_table, Candidate._meta.db_table],
            )
            self.prompt_sequence, self.candidate_sequence = cursor.fetchone()
        # The look-up of the chunk's prompt ids is one probe of the unique index (project,
        # external_id) per id: LIMIT keeps the lateral subquery a loop of its own, which the
        # planner cannot turn into a scan of the project's prompts. A plain `external_id =
        # ANY(...)` was planned on the statistics of the table as it stood before the import
        # (a few rows), as a scan of every prompt of the project filtered by the list: its cost
        # grew with each chunk the import wrote, 9 ms a chunk at the start and 63 ms at the end
        # of a million comparisons, 26 s in all (bench/import_rate.py).
        self.reserve_sql = (
            "SELECT ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s)), "  # noqa: S608
            "ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s)), "
            "(SELECT json_agg(json_build_array(x.external_id, p.batch_id)) "
            "FROM unnest(%s::text[]) AS x(external_id) CROSS JOIN LATERAL ("
            f"SELECT batch_id FROM {Prompt._meta.db_table} "
            "WHERE project_id = %s AND external_id = x.external_id LIMIT 1) AS p)"
        )

    def store(self, prompts: list[ParsedPrompt]) -> int:
        # One round trip a chunk, on the transaction's connection (from the writing thread: the
        # ORM would open another): the prompts' and candidates' ids, and the file's prompt ids
        # already in the project.
        honeypots = [self.honeypots.make(p) for p in prompts]
        candidates = sum(len(p.candidates) for p in prompts) + sum(h is not None for h in honeypots)
        with self.db.cursor() as cursor:
            cursor.execute(
                self.reserve_sql,
                [
                    self.prompt_sequence,
                    len(prompts),
                    self.candidate_sequence,
                    candidates,
                    [p.external_id for p in prompts],
                    self.project.pk,
                ],
            )
            prompt_ids, candidate_ids, found = cursor.fetchone()
        if self.refused(_existing_errors(prompts, found or [])):
            return 0
        return self._write(prompts, honeypots, prompt_ids, candidate_ids)

    def write(self, prompts: list[ParsedPrompt]) -> int:
        return self.store(prompts)  # the ids are reserved with the look-up: one round trip

    def _write(
        self,
        prompts: list[ParsedPrompt],
        honeypots: list[Honeypot | None],
        prompt_ids: list[int],
        candidate_ids: list[int],
    ) -> int:
        project_id, batch_id, policy = self.project.pk, self.batch.pk, self.policy
        rank = self.rank.getrandbits
        written = 0
        # psycopg's own cursor, for COPY; its errors become Django's (IntegrityError...).
        with self.db.cursor() as cursor, self.db.wrap_database_errors:
            raw = cursor.cursor
            with raw.copy(self.prompt_copy) as copy:
                fixed = self.prompt_fixed
                for pk, p in zip(prompt_ids, prompts, strict=True):
                    copy.write_row(
                        (
                            pk,
                            project_id,
                            batch_id,
                            p.external_id,
                            _json(p.content),
                            _json(p.metadata),
                            *fixed,
                        )
                    )
            written += len(prompts)
            with raw.copy(self.candidate_copy) as copy:
                fixed = self.candidate_fixed
                ids = iter(candidate_ids)
                for prompt_id, p, honeypot in zip(prompt_ids, prompts, honeypots, strict=True):
                    for c, degradation in _candidates(p, honeypot):
                        copy.write_row(
                            (
                                next(ids),
                                prompt_id,
                                c.external_id,
                                c.text,
                                c.model,
                                _json(c.params),
                                _json(c.metadata),
                                degradation,
                                *fixed,
                            )
                        )
            written += len(candidate_ids)
            with raw.copy(self.comparison_copy) as copy:
                fixed = self.comparison_fixed
                position = 0
                for prompt_id, p, honeypot in zip(prompt_ids, prompts, honeypots, strict=True):
                    count = len(p.candidates) + (honeypot is not None)
                    own = candidate_ids[position : position + count]
                    position += count
                    for a, b, is_gold, answer, ranked in _pairs(p, own, self.listwise, honeypot):
                        copy.write_row(
                            (
                                project_id,
                                batch_id,
                                prompt_id,
                                a,
                                b,
                                is_gold,
                                answer,
                                None if ranked is None else _json(ranked),
                                rank(31),
                                policy,
                                *fixed,
                            )
                        )
                        written += 1
        return written


def _copy_columns(model: Any, given: list[str]) -> tuple[list[str], tuple[Any, ...]]:
    """The columns COPY writes for a model: those given (by field name), then every other
    concrete column with its field's default; the defaults, ready for COPY."""
    columns = [model._meta.get_field(name).column for name in given]
    fixed: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.name in given or field.column in columns:
            continue
        if field.primary_key:
            continue
        if not field.has_default():
            if field.null:
                continue
            raise ImproperlyConfigured(
                f"{model.__name__}.{field.name} has no default: the import's COPY cannot fill it"
            )
        value = field.get_default()
        if isinstance(value, dict | list):
            value = _json(value)
        columns.append(field.column)
        fixed.append(value)
    return columns, tuple(fixed)


def _copy_sql(model: Any, columns: list[str]) -> str:
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    return f"COPY {connection.ops.quote_name(model._meta.db_table)} ({names}) FROM STDIN"


def _listwise_problem(prompt: ParsedPrompt, *, candidates_optional: bool = False) -> str | None:
    """A listwise project ranks 3-8 responses per prompt, and has no gold items (yet). With
    candidates optional, a prompt with fewer than 3 waits for its responses; more than 8 is
    still too many to rank."""
    count = len(prompt.candidates)
    if count > LISTWISE_MAX or (count < LISTWISE_MIN and not candidates_optional):
        hint = f"; {CANDIDATES_OPTIONAL_HINT}" if count < LISTWISE_MIN else ""
        return (
            f"this project ranks {LISTWISE_MIN} to {LISTWISE_MAX} responses per prompt; "
            f"this prompt has {count}{hint}"
        )
    if prompt.gold_preferred or prompt.gold_outcome:
        return "a listwise project takes no gold items"
    return None


def _check_listwise(prompts: list[ParsedPrompt], *, candidates_optional: bool = False) -> None:
    errors = [
        LineError(prompt.line, problem)
        for prompt in prompts
        if (problem := _listwise_problem(prompt, candidates_optional=candidates_optional))
    ]
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
    if postgresql():
        with connection.cursor() as cursor:
            for model in (Prompt, Candidate, Comparison):
                cursor.execute(f"ANALYZE {model._meta.db_table}")


def _existing_id_errors(project: Project, prompts: list[ParsedPrompt]) -> list[LineError]:
    """An error for each of the prompts whose id is already in the project, in line order."""
    existing = Prompt.objects.filter(
        project=project, external_id__in=[p.external_id for p in prompts]
    ).values_list("external_id", "batch_id")
    return _existing_errors(prompts, existing)


def _existing_errors(
    prompts: list[ParsedPrompt], existing: Iterable[tuple[str, int]]
) -> list[LineError]:
    """The errors for the prompts whose ids were found in the project, with the batch holding
    each, in line order."""
    line_of = {p.external_id: p.line for p in prompts}
    return sorted(
        (
            LineError(
                line_of[external_id],
                f"duplicate prompt id {external_id!r}: already in this project (batch {batch_id})",
            )
            for external_id, batch_id in existing
        ),
        key=lambda e: e.line or 0,
    )


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
        errors = _existing_errors(prompts, existing)
        limit = settings.IMPORT_MAX_REPORTED_ERRORS
        raise ImportFormatError(errors[:limit], total=len(errors))


class BatchActionError(Conflict):
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


# How long a cancel or a delete waits for the batch row's lock: a run's progress write holds it
# for a moment, a run storing the rows holds it until the batch is whole.
LOCK_WAIT_MS = 2000


@contextlib.contextmanager
def _batch_locked(batch: Batch, doing: str) -> Iterator[Batch]:
    """The batch, locked, in a transaction; BatchActionError if a run is storing its rows (the
    lock is held longer than LOCK_WAIT_MS)."""
    try:
        with transaction.atomic():
            if postgresql():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT_MS}ms'")
            current = Batch.objects.select_for_update().filter(pk=batch.pk).first()
            if current is None:
                raise BatchActionError(f"{batch} no longer exists.")
            yield current
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise BatchActionError(
            f"{batch} cannot {doing} now: its import is storing the rows, in one transaction, "
            "and will be active in a moment (close it then, or delete it while nobody has "
            "judged it)."
        ) from None


def batch_import_cancel(*, batch: Batch, by: Actor) -> Batch:
    """Cancels a background import that is waiting for a worker or checking its file.

    The batch becomes `cancelled` (with the reason in `errors`), its uploaded file is deleted,
    and the audit log records it (`batch_status`, action `cancel`). A queued import is then never
    started; a running one's worker stops at its next progress write. Raises BatchActionError
    for a batch that is not importing, or whose rows are being stored (that cannot be stopped
    halfway: the batch is whole or not at all).
    """
    with _batch_locked(batch, "be cancelled") as current:
        if current.status != BatchStatus.IMPORTING:
            raise BatchActionError(
                f"{current} is {current.get_status_display().lower()}: only an import in "
                "progress can be cancelled."
            )
        running = current.import_running
        where = f"during attempt {current.import_attempts}" if running else "waiting for a worker"
        by_whom = f" by {by.get_username()}" if by is not None and by.is_authenticated else ""
        current.status = BatchStatus.CANCELLED
        current.import_running = False
        current.errors = [{"line": None, "error": f"cancelled{by_whom} {where}"}]
        current.finished_at = timezone.now()
        current.save(update_fields=["status", "import_running", "errors", "finished_at"])
        BatchSource.objects.filter(batch=current).delete()
        audit_record(
            actor=by,
            action=AuditAction.BATCH_STATUS,
            project=current.project,
            target=current,
            details={
                "action": "cancel",
                "status": {"old": BatchStatus.IMPORTING, "new": BatchStatus.CANCELLED},
                "attempts": current.import_attempts,
                "running": running,
                "rows_done": current.rows_done,
            },
        )
    batch.status = current.status
    return current


# The statuses of a batch that may be deleted, if it holds no judgments: an active or paused one
# is handing out (or holding) work, and is closed first.
DELETABLE_STATUSES = frozenset(
    {
        BatchStatus.IMPORTING,
        BatchStatus.FAILED,
        BatchStatus.CANCELLED,
        BatchStatus.DRAFT,
        BatchStatus.DONE,
    }
)


def batch_delete(*, batch: Batch, by: Actor) -> dict[str, Any]:
    """Deletes a batch that holds no judgments, with its prompts, candidates, comparisons and
    uploaded file; returns what was deleted (as the audit log records it, `batch_deleted`).

    An import still in progress is stopped as a cancel stops it. Raises BatchActionError, and
    deletes nothing, for an active or paused batch, one that holds judgments (they are kept
    for good: close the batch instead), one with comparisons leased to annotators now, or one
    whose rows are being stored.
    """
    with _batch_locked(batch, "be deleted") as current:
        if current.status not in DELETABLE_STATUSES:
            raise BatchActionError(
                f"{current} is {current.get_status_display().lower()}: close it first (only a "
                f"batch that is {', '.join(sorted(DELETABLE_STATUSES))} can be deleted)."
            )
        # Through the comparisons (batches do not import judging): every judgment has one.
        judged = Comparison.objects.filter(batch=current).aggregate(n=Count("judgments"))["n"]
        if judged:
            raise BatchActionError(
                f"{current} holds {judged} judgment(s): it cannot be deleted, since judgments "
                "are kept for good (close it instead)."
            )
        leased = Comparison.objects.filter(batch=current, lease_count__gt=0).count()
        if leased:
            raise BatchActionError(
                f"{current} has {leased} comparison(s) leased to annotators now: close it and "
                "delete it once the leases have been answered or have expired."
            )
        details = {
            "name": current.name,
            "status": current.status,
            "prompts": Prompt.objects.filter(batch=current).count(),
            "comparisons": Comparison.objects.filter(batch=current).count(),
            "import_attempts": current.import_attempts,
        }
        audit_record(
            actor=by,
            action=AuditAction.BATCH_DELETED,
            project=current.project,
            target=current,
            details=details,
        )
        try:
            with transaction.atomic():
                current.delete()
        except ProtectedError:
            # A judgment came in since the count: it is kept, and so is the batch.
            raise BatchActionError(
                f"{current} holds judgments now: it cannot be deleted (close it instead)."
            ) from None
    return details
