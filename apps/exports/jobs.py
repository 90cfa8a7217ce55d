"""Background exports: request, run, recover and expire export files.

A job's life: `queued` (POST) -> `running` (a worker claimed it) -> `done` (file and card renamed
into place) -> `expired` (files deleted after EXPORT_TTL); or `failed`, with the reason; or
`cancelled` on request while queued or running (`export_job_cancel`).

Running it twice at once is ruled out by the claim: a run starts only by a conditional UPDATE
that moves the job from queued (or from running with a stale heartbeat) to running and bumps
`attempts`; every later write of the run (progress, heartbeat, the final rename) is conditional
on the job still being running under that same attempt number. A duplicate delivery of the task
(acks_late redelivers an unacknowledged message) finds the job done, or running with a fresh
heartbeat, and does nothing; a run that was superseded notices at its next heartbeat and stops.
A cancel is the same to a run: the job is no longer running under its attempt, so its next write
fails, and it stops and removes its temporary file; a queued job that was cancelled is never
claimed.

A worker that dies mid-export leaves the job running with a heartbeat that stops moving; the
beat sweep (`export_jobs_sweep`) re-queues it while attempts < EXPORT_MAX_ATTEMPTS, or marks it
failed. Each run writes from scratch into a temporary file of its own, renamed atomically.
"""

import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import Storage
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from annotate.broker import BrokerUnavailable, broker_check, send_task
from annotate.celery import app
from annotate.errors import Conflict
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.honeypots import honeypot_q
from apps.batches.models import Comparison
from apps.exports.api import export_options, jsonl_chunks
from apps.exports.card import dataset_card
from apps.exports.formats import FORMATS, export_rows, shape_of
from apps.exports.models import ExportJob, ExportStatus, FileFormat
from apps.exports.options import Options
from apps.exports.selectors import voted_by
from apps.exports.storage import export_storage, storage_check, storage_error, storage_save
from apps.judging.models import Choice, Judgment
from apps.projects.models import Project

logger = logging.getLogger(__name__)

# Sent by name (annotate.broker.send_task): the tasks module imports this one.
EXPORT_TASK = "apps.exports.tasks.export_job_task"

PAIRWISE_FORMATS = ("trl", "trl-implicit", "kto", "hh-rlhf", "openai")


class Superseded(Conflict):
    """This run no longer owns the job (re-queued by the sweep, claimed by another run, or
    cancelled)."""


class NotCancellable(Conflict):
    """The job has ended (done, failed, expired or cancelled): there is nothing to stop.
    `job_status` is the status it ended with (`status` is the HTTP one)."""

    def __init__(self, job_status: str) -> None:
        kept = " Its file stays until it expires." if job_status == ExportStatus.DONE else ""
        super().__init__(
            f"This export is {job_status}: only a queued or running export can be cancelled.{kept}"
        )
        self.job_status = job_status


# --- requesting -------------------------------------------------------------------------------


def _query_value(name: str, value: Any) -> str:
    """A JSON body's value as the query string would carry it; a 400 naming it otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValidationError({name: ["Must be a string, a number or a boolean."]})


def export_job_parameters(
    *, project: Project, data: Mapping[str, Any]
) -> tuple[str, str, dict[str, str]]:
    """(format, file_format, parameters) from a request body, validated as the streaming
    endpoint validates its query string: a 400 names each bad parameter."""
    params = {name: _query_value(name, value) for name, value in data.items() if value is not None}
    format = params.pop("format", "trl")
    file_format = params.pop("file_format", FileFormat.JSONL)
    if format not in FORMATS:
        raise ValidationError({"format": [f"Use one of {', '.join(FORMATS)}."]})
    if file_format not in FileFormat.values:
        raise ValidationError({"file_format": [f"Use one of {', '.join(FileFormat.values)}."]})
    # With the project: its batch, models and criteria are checked now, not when the job runs.
    export_options(params, format, project)
    return format, file_format, params


def export_job_request(
    *, project: Project, user: User | None, data: Mapping[str, Any]
) -> ExportJob:
    """Creates a queued job and sends it to the workers (after commit). With Celery eager (no
    REDIS_URL), it runs here and now, and the job is returned finished.

    While the broker cannot be reached it raises BrokerUnavailable (a 503) and leaves no job:
    the broker is checked before the job is created, and a job whose send fails after all is
    deleted again (annotate/broker.py).
    """
    format, file_format, parameters = export_job_parameters(project=project, data=data)
    broker_check()
    job = ExportJob.objects.create(
        project=project,
        requested_by=user,
        format=format,
        file_format=file_format,
        parameters=parameters,
        heartbeat_at=timezone.now(),
    )
    audit_record(
        actor=user,
        action=AuditAction.EXPORT,
        project=project,
        target=job,
        details={"format": format, "file_format": file_format, **parameters},
    )
    if app.conf.task_always_eager:
        export_job_run(job.pk)
        job.refresh_from_db()
    else:
        transaction.on_commit(functools.partial(_export_job_send, job.pk))
    return job


def _export_job_send(job_id: int) -> None:
    """Sends a new job to the workers, or deletes it and raises BrokerUnavailable."""
    try:
        send_task(EXPORT_TASK, job_id)
    except BrokerUnavailable:
        ExportJob.objects.filter(pk=job_id, status=ExportStatus.QUEUED).delete()
        raise


def export_job_cancel(*, job: ExportJob, user: User | None) -> ExportJob:
    """Cancels a queued or running job and records it in the audit log; returns the job.

    A queued job is then never claimed. A running job's worker finds at its next progress or
    heartbeat write (every EXPORT_PROGRESS_ROWS rows) that the job is no longer its own: it
    stops and removes its temporary file (the sweep removes a dead worker's). The job's row is
    locked, so a run that is publishing its file either finishes first (and the cancel is
    refused) or finds the job cancelled and publishes nothing. Raises NotCancellable for a job
    that has ended: a done job and its file are left as they are.
    """
    with transaction.atomic():
        status = (
            ExportJob.objects.select_for_update()
            .filter(pk=job.pk)
            .values_list("status", flat=True)
            .get()
        )
        if status not in (ExportStatus.QUEUED, ExportStatus.RUNNING):
            raise NotCancellable(status)
        now = timezone.now()
        by = f" by {user.get_username()}" if user is not None else ""
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportStatus.CANCELLED, finished_at=now, error=f"cancelled{by} while {status}"
        )
        job.refresh_from_db()
        audit_record(
            actor=user,
            action=AuditAction.EXPORT_CANCELLED,
            project=job.project,
            target=job,
            details={
                "format": job.format,
                "file_format": job.file_format,
                "parameters": job.parameters,
                "status": {"old": status, "new": ExportStatus.CANCELLED},
                "rows_written": job.rows_written,
            },
        )
    return job


# --- files ------------------------------------------------------------------------------------


# The files live in the "exports" storage (apps/exports/storage.py): the folder EXPORT_ROOT, or
# an S3 bucket. A run writes its temporary files in EXPORT_ROOT, its host's own folder when the
# storage is S3, and hands them to the storage once done.

FILE_CONTENT_TYPES = {
    FileFormat.JSONL: "application/jsonl",
    FileFormat.PARQUET: "application/vnd.apache.parquet",
}
CARD_CONTENT_TYPE = "text/markdown; charset=utf-8"


def export_root() -> Path:
    """The folder of temporary files (and of the files themselves with the local storage)."""
    root = Path(settings.EXPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_stem(job: ExportJob) -> str:
    return f"export-{job.pk}"


def card_name(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0] + ".card.md"


def _temp_files(job_id: int) -> list[Path]:
    return list(export_root().glob(f".export-{job_id}-*.tmp"))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def export_job_delete_files(job: ExportJob) -> None:
    """The job's file and card, from the export storage, and any temporary file a run left
    here. A storage that fails raises (StorageUnavailable or the storage's error)."""
    for temp in _temp_files(job.pk):
        _remove(temp)
    if job.file_name:
        storage = export_storage()
        storage.delete(job.file_name)
        storage.delete(card_name(job.file_name))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


# --- running ----------------------------------------------------------------------------------


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.EXPORT_STALE_AFTER)


def export_job_claim(job_id: int) -> int | None:
    """Moves the job to running for this run; returns the run's attempt number, or None when
    the job is not this run's to take (done, failed, expired, or running with a fresh
    heartbeat)."""
    now = timezone.now()
    claimable = Q(status=ExportStatus.QUEUED) | Q(
        status=ExportStatus.RUNNING,
        heartbeat_at__lt=_stale_before(now),
        attempts__lt=settings.EXPORT_MAX_ATTEMPTS,
    )
    with transaction.atomic():
        claimed = (
            ExportJob.objects.filter(claimable, pk=job_id).update(
                status=ExportStatus.RUNNING,
                attempts=F("attempts") + 1,
                heartbeat_at=now,
                started_at=now,
                finished_at=None,
                rows_written=0,
                rows_total=None,
                error="",
            )
            == 1
        )
        if not claimed:
            return None
        return int(ExportJob.objects.values_list("attempts", flat=True).get(pk=job_id))


class _Run:
    """One claimed run of a job: writes progress and heartbeats, only while it owns the job."""

    def __init__(self, job: ExportJob, attempt: int) -> None:
        self.job = job
        self.attempt = attempt
        self.rows = 0
        self.every = settings.EXPORT_PROGRESS_ROWS
        self.delay = settings.EXPORT_TEST_DELAY_MS / 1000

    def owned(self) -> Any:
        return ExportJob.objects.filter(
            pk=self.job.pk, status=ExportStatus.RUNNING, attempts=self.attempt
        )

    def update(self, **fields: Any) -> None:
        if not self.owned().update(heartbeat_at=timezone.now(), **fields):
            raise Superseded()

    def counted(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            yield row
            self.rows += 1
            if self.rows % self.every == 0:
                self.update(rows_written=self.rows)
                if self.delay:
                    time.sleep(self.delay)  # the test hook (EXPORT_TEST_DELAY_MS)


@contextlib.contextmanager
def _beating(run: _Run) -> Iterator[None]:
    """Heartbeats from a thread of its own (with its own connection) every third of
    EXPORT_STALE_AFTER while the block runs."""
    stop = threading.Event()
    every = max(settings.EXPORT_STALE_AFTER / 3, 0.05)

    def beat() -> None:
        try:
            while not stop.wait(every):
                run.owned().update(heartbeat_at=timezone.now())
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"export-{run.job.pk}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def rows_estimate(*, project: Project, format: str, options: Options) -> int:
    """About how many rows the export will have (an upper bound for the pairwise formats:
    comparisons without a winner or filtered out are counted)."""
    comparisons = Comparison.objects.filter(project=project)
    if options.human_only:
        comparisons = comparisons.filter(judgment_count__gt=0)
    else:
        comparisons = comparisons.filter(voted_by(options.sources))
    if not options.include_gold:
        comparisons = comparisons.filter(is_gold=False)
    else:
        comparisons = comparisons.exclude(honeypot_q())  # never in the pairwise formats
    if options.batch_id is not None:
        comparisons = comparisons.filter(batch_id=options.batch_id)
    if format == "listwise":
        return comparisons.filter(candidate_ids__isnull=False).count()
    if format in PAIRWISE_FORMATS:
        pairs = comparisons.filter(candidate_ids__isnull=True).count()
        # A ranking of k responses gives k(k-1)/2 pairs.
        for ids in comparisons.filter(candidate_ids__isnull=False).values_list(
            "candidate_ids", flat=True
        ):
            pairs += len(ids or []) * (len(ids or []) - 1) // 2
        return pairs * (2 if format == "kto" else 1)
    judgments = Judgment.objects.filter(
        comparison__project=project, invalidated_at__isnull=True, source__in=options.sources
    )
    if not options.include_gold:
        judgments = judgments.filter(comparison__is_gold=False)
    if options.batch_id is not None:
        judgments = judgments.filter(comparison__batch_id=options.batch_id)
    if format == "arena":
        judgments = judgments.filter(comparison__candidate_ids__isnull=True).exclude(
            choice=Choice.RANKING
        )
        if options.include_gold:
            judgments = judgments.exclude(honeypot_q("comparison__"))  # as judged_pairs does
        if not options.include_ties:
            judgments = judgments.exclude(choice__in=(Choice.TIE, Choice.BOTH_BAD))
    return judgments.count()


def export_parquet_write(
    *,
    project: Project,
    format: str,
    options: Options,
    rows: Iterator[dict[str, Any]],
    sink: BinaryIO,
) -> int:
    """Writes an export's rows to `sink` as Parquet, in row groups of EXPORT_PARQUET_ROW_GROUP
    rows; returns how many. The one writer of background jobs and `manage.py export`."""
    # Imported here: pyarrow is about 50 MiB of a process's memory, and every process imports
    # this module as Django starts (tests/annotate/test_startup_memory.py).
    from apps.exports.parquet import write_parquet

    return write_parquet(
        rows,
        sink,
        format=format,
        shape=shape_of(project, options),
        row_group=settings.EXPORT_PARQUET_ROW_GROUP,
    )


def _write(run: _Run, temp: Path, rows: Iterator[dict[str, Any]], options: Options) -> None:
    job = run.job
    with temp.open("wb") as file:
        if job.file_format == FileFormat.PARQUET:
            export_parquet_write(
                project=job.project, format=job.format, options=options, rows=rows, sink=file
            )
        else:
            for chunk in jsonl_chunks(rows):
                file.write(chunk)
        file.flush()
        os.fsync(file.fileno())


def export_job_run(job_id: int) -> str:
    """Runs the job if this run may claim it; returns the job's status afterwards. Any error
    marks the job failed with the reason (it is not raised: the job records it)."""
    attempt = export_job_claim(job_id)
    if attempt is None:
        status = ExportJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        logger.info("export %s not claimed (status %s): nothing to do", job_id, status)
        return str(status)
    job = ExportJob.objects.select_related("project").get(pk=job_id)
    run = _Run(job, attempt)
    root = Path(settings.EXPORT_ROOT)
    temp = root / f".export-{job.pk}-{attempt}.tmp"
    card_temp = root / f".export-{job.pk}-{attempt}.card.tmp"
    storage = export_storage()
    try:
        export_root()  # made if missing; an error here fails the job, with the reason
        # A missing bucket or an S3 that does not answer fails the job now, not after the export.
        storage_check(storage)
        options = export_options(job.parameters, job.format)
        run.update(
            rows_total=rows_estimate(project=job.project, format=job.format, options=options)
        )
        rows = run.counted(export_rows(project=job.project, format=job.format, options=options))
        _write(run, temp, rows, options)
        run.update(rows_written=run.rows)
        # The card's statistics read the whole project: keep the heartbeat going meanwhile, so
        # that the sweep does not take a long card for a dead worker.
        with _beating(run):
            card = dataset_card(project=job.project, options=options)
        card_temp.write_text(card, encoding="utf-8")
        _fsync(card_temp)
        return _finish(run, temp, card_temp, storage)
    except Superseded:
        _remove(temp)
        _remove(card_temp)
        status = ExportJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        if status == ExportStatus.CANCELLED:
            logger.info("export %s attempt %s was cancelled; stopped", job.pk, attempt)
            return ExportStatus.CANCELLED
        logger.warning("export %s attempt %s was superseded; stopping", job.pk, attempt)
        return ExportStatus.RUNNING
    except Exception as exc:
        logger.exception("export %s attempt %s failed", job.pk, attempt)
        _remove(temp)
        _remove(card_temp)
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, ValidationError):
            reason = f"bad parameters: {exc.detail}"
        error = f"{type(exc).__name__}: {reason}"
        if (unavailable := storage_error(exc)) is not None:
            error = str(unavailable)
        run.owned().update(
            status=ExportStatus.FAILED,
            error=error[:2000],
            finished_at=timezone.now(),
            rows_written=run.rows,
        )
        return ExportStatus.FAILED


def _finish(run: _Run, temp: Path, card_temp: Path, storage: Storage | None = None) -> str:
    """Hands the files to the storage and marks the job done, under the job's row lock and only
    if this run still owns it: two runs can never both publish. With the local folder that is a
    rename; with S3 an upload (a cancel waits for it), and the temporary files are removed."""
    job = run.job
    suffix = "jsonl" if job.file_format == FileFormat.JSONL else "parquet"
    name = f"{file_stem(job)}.{suffix}"
    storage = storage or export_storage()
    size = temp.stat().st_size
    digest = _sha256(temp)
    with transaction.atomic():
        locked = run.owned().select_for_update().first()
        if locked is None:
            raise Superseded()
        try:
            content_type = FILE_CONTENT_TYPES[FileFormat(job.file_format)]
            name = storage_save(storage, name, temp, content_type)
            storage_save(storage, card_name(name), card_temp, CARD_CONTENT_TYPE)
        except Exception:
            # Nothing half-published: whatever arrived goes (if the storage lets us).
            for stored in (name, card_name(name)):
                with contextlib.suppress(Exception):
                    storage.delete(stored)
            raise
        finally:
            _remove(temp)
            _remove(card_temp)
        now = timezone.now()
        run.update(
            status=ExportStatus.DONE,
            rows_written=run.rows,
            file_name=name,
            file_size=size,
            sha256=digest,
            finished_at=now,
            expires_at=now + timedelta(seconds=settings.EXPORT_TTL),
        )
    logger.info("export %s done: %s rows, %s bytes", job.pk, run.rows, size)
    return ExportStatus.DONE


# --- the beat sweep ---------------------------------------------------------------------------


def _delete_files_or_keep(job: ExportJob, why: str) -> bool:
    """Deletes the job's files; False (logged) when the storage fails, so that the job stays as
    it is and the next sweep tries again (an expired job's download answers 410 meanwhile)."""
    try:
        export_job_delete_files(job)
    except Exception as exc:
        reason = storage_error(exc) or exc
        logger.warning("export %s (%s): its files stay for now: %s", job.pk, why, reason)
        return False
    return True


def export_jobs_sweep(now: datetime | None = None) -> dict[str, int]:
    """Recovers and expires jobs; returns how many it re-queued, failed, re-sent and expired.

    - running with a heartbeat older than EXPORT_STALE_AFTER: its worker died (or hangs).
      Re-queued (and sent) while attempts < EXPORT_MAX_ATTEMPTS, else failed with the reason;
    - queued for longer than EXPORT_STALE_AFTER: sent again, in case its message was lost
      (a duplicate delivery is harmless: the claim lets one run through);
    - done and past `expires_at`: the files are deleted and the job marked expired;
    - cancelled, with a heartbeat older than EXPORT_STALE_AFTER: a cancelled run removes its
      own temporary file, but one whose worker had died cannot; any left is deleted, once (the
      heartbeat is cleared). A cancelled job is never re-queued.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0, "expired": 0}
    stale = _stale_before(now)
    to_send: list[int] = []
    with transaction.atomic():
        jobs = (
            ExportJob.objects.select_for_update(skip_locked=True)
            .filter(status=ExportStatus.RUNNING, heartbeat_at__lt=stale)
            .order_by("id")
        )
        for job in jobs:
            _delete_files_or_keep(job, "stale")  # temporary files only: it has published none
            if job.attempts < settings.EXPORT_MAX_ATTEMPTS:
                job.status = ExportStatus.QUEUED
                job.error = (
                    f"attempt {job.attempts} stopped (no heartbeat for "
                    f"{settings.EXPORT_STALE_AFTER} s); re-queued"
                )
                job.heartbeat_at = now
                counts["requeued"] += 1
                to_send.append(job.pk)
            else:
                job.status = ExportStatus.FAILED
                job.error = (
                    f"attempt {job.attempts} of {settings.EXPORT_MAX_ATTEMPTS} stopped (no "
                    f"heartbeat for {settings.EXPORT_STALE_AFTER} s: its worker died or hung); "
                    "no attempts left"
                )
                job.finished_at = now
                counts["failed"] += 1
            job.save(update_fields=["status", "error", "heartbeat_at", "finished_at"])
        lost = (
            ExportJob.objects.select_for_update(skip_locked=True)
            .filter(status=ExportStatus.QUEUED, heartbeat_at__lt=stale)
            .order_by("id")
        )
        for job in lost:
            job.heartbeat_at = now
            job.save(update_fields=["heartbeat_at"])
            counts["resent"] += 1
            to_send.append(job.pk)
        expired = (
            ExportJob.objects.select_for_update(skip_locked=True)
            .filter(status=ExportStatus.DONE, expires_at__lte=now)
            .order_by("id")
        )
        for job in expired:
            if not _delete_files_or_keep(job, "expired"):
                continue
            job.status = ExportStatus.EXPIRED
            job.save(update_fields=["status"])
            counts["expired"] += 1
        cancelled = (
            ExportJob.objects.select_for_update(skip_locked=True)
            .filter(status=ExportStatus.CANCELLED, heartbeat_at__lt=stale)
            .order_by("id")
        )
        for job in cancelled:
            if not _delete_files_or_keep(job, "cancelled"):
                continue
            job.heartbeat_at = None
            job.save(update_fields=["heartbeat_at"])
        for job_id in to_send:
            transaction.on_commit(functools.partial(send_task, EXPORT_TASK, job_id))
    if any(counts.values()):
        logger.info("export sweep: %s", counts)
    return counts
