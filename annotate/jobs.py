"""Background jobs that workers run in steps and leads cancel and resume: generation jobs
(apps.generation) and AI judging jobs (apps.judges) share these rules. Imports no app: each
function takes the job's model, which has `status`, `attempts`, `heartbeat_at`, `note` and
`finished_at`, with the statuses below.

A job is `queued` until a run claims it with a conditional UPDATE (`running`, attempts + 1,
heartbeat now). Every later write of the run is conditional on that attempt (`job_held`), so a
run that was superseded (cancelled, or re-queued by the sweep after its heartbeat stopped)
notices at its next heartbeat and stops. The beat sweep re-sends a queued job whose message was
lost, and re-queues a running one whose heartbeat is `stale_after` seconds old, `max_attempts`
runs in all, then stops it saying why. A cancelled, stopped or done job can be queued again.
"""

import logging
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate.broker import BrokerUnavailable, send_task
from annotate.errors import Conflict

logger = logging.getLogger(__name__)

Job = TypeVar("Job", bound=models.Model)

QUEUED, RUNNING, DONE, CANCELLED, STOPPED = "queued", "running", "done", "cancelled", "stopped"
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (CANCELLED, STOPPED, DONE)
STATUS_CHOICES = [
    (QUEUED, "Queued"),
    (RUNNING, "Running"),
    (DONE, "Done"),
    # A lead cancelled it; what it made stays, and it can be resumed.
    (CANCELLED, "Cancelled"),
    # It stopped on its own (an endpoint kept failing, a key is missing, its worker died too
    # often), saying why. It can be resumed.
    (STOPPED, "Stopped"),
]


def job_claim(model: type[models.Model], job_id: int, *, stale_after: float) -> int | None:
    """Gives a queued job (or a running one whose heartbeat stopped) to this run; returns the
    run's attempt number, or None when it is not this run's to take."""
    now = timezone.now()
    claimable = Q(status=QUEUED) | Q(
        status=RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale_after)
    )
    with transaction.atomic():
        claimed = model._default_manager.filter(claimable, pk=job_id).update(
            status=RUNNING, attempts=F("attempts") + 1, heartbeat_at=now
        )
        if not claimed:
            return None
        return int(model._default_manager.values_list("attempts", flat=True).get(pk=job_id))


def job_held(model: type[models.Model], job_id: int, attempt: int) -> Any:
    """The job, as a queryset, while this run (`attempt`) holds it: empty otherwise."""
    return model._default_manager.filter(pk=job_id, status=RUNNING, attempts=attempt)


def job_status(model: type[models.Model], job_id: int) -> str:
    status = model._default_manager.filter(pk=job_id).values_list("status", flat=True).first()
    return str(status or "")


def job_send(task: str, model: type[models.Model], job_id: int, *, new: bool) -> None:
    """Sends a job to the workers. When the broker cannot take it, a new job is deleted (the
    request answers 503 and leaves nothing), a resumed one stops saying why; then it raises."""
    try:
        send_task(task, job_id)
    except BrokerUnavailable:
        queued = model._default_manager.filter(pk=job_id, status=QUEUED)
        if new:
            queued.delete()
        else:
            queued.update(status=STOPPED, note="the task queue (Redis) could not take it")
        raise


def job_cancel(model: type[Job], job_id: int) -> Job:
    """Marks a queued or running job cancelled (its run stops at its next heartbeat); Conflict
    otherwise. Returns the job; the caller's transaction holds its lock."""
    current: Any = model._default_manager.select_for_update().get(pk=job_id)
    if current.status not in ACTIVE:
        raise Conflict(f"Job {current.pk} is {current.status}: nothing to cancel.")
    current.status, current.note, current.finished_at = CANCELLED, "cancelled", timezone.now()
    current.save(update_fields=["status", "note", "finished_at"])
    job: Job = current
    return job


def job_requeue(model: type[Job], job_id: int) -> Job:
    """Queues a cancelled, stopped or done job again, its runs counted anew; Conflict otherwise.
    Returns the job; the caller's transaction holds its lock."""
    current: Any = model._default_manager.select_for_update().get(pk=job_id)
    if current.status not in RESUMABLE:
        raise Conflict(f"Job {current.pk} is {current.status} already.")
    current.status, current.note, current.finished_at = QUEUED, "", None
    current.attempts, current.heartbeat_at = 0, timezone.now()
    current.save(update_fields=["status", "note", "finished_at", "attempts", "heartbeat_at"])
    job: Job = current
    return job


def job_sweep(
    model: type[models.Model],
    task: str,
    *,
    stale_after: float,
    max_attempts: int,
    now: datetime | None = None,
) -> dict[str, int]:
    """The beat job's part for one kind of job (see the module's docstring)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=stale_after)
    counts = {"resent": 0, "requeued": 0, "stopped": 0}
    dead = model._default_manager.filter(status=RUNNING, heartbeat_at__lt=stale)
    job: Any
    for job in dead:
        if job.attempts >= max_attempts:
            if dead.filter(pk=job.pk).update(
                status=STOPPED,
                note=f"its worker stopped {job.attempts} times; resume it to try again",
                finished_at=now,
            ):
                counts["stopped"] += 1
        elif dead.filter(pk=job.pk).update(status=QUEUED, heartbeat_at=now):
            counts["requeued"] += 1
            _resend(task, job.pk)
    lost = model._default_manager.filter(status=QUEUED, heartbeat_at__lt=stale)
    for job in lost:
        if lost.filter(pk=job.pk).update(heartbeat_at=now):
            counts["resent"] += 1
            _resend(task, job.pk)
    return counts


def _resend(task: str, job_id: int) -> None:
    try:
        send_task(task, job_id)
    except BrokerUnavailable:
        logger.warning("%s(%s): the broker is gone; the next sweep sends it", task, job_id)
