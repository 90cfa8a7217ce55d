"""Generating candidates: a job samples responses for a batch's prompts from model endpoints, in
the background, and forms each prompt's comparisons as soon as its responses are settled, so that
annotators can start before the whole batch is generated.

Idempotent per (prompt, endpoint, sample index): the candidate of each is unique in the database
(Candidate.candidate_unique_sample), a run asks only for those that have none, and a response
that arrives for one that another run filled meanwhile is dropped. So a retried, resumed or
re-delivered job never makes a duplicate, whatever killed the one before.

Running a job. A job is `queued` until a run claims it with a conditional UPDATE (status
`running`, attempts + 1, heartbeat now); the run's heartbeat, written about once a second with
its progress, is conditional on that attempt, so a run that was superseded (cancelled, or
re-queued by the sweep after its heartbeat stopped) notices within a second and stops asking.
Requests go out from a thread pool as wide as the endpoints' concurrency limits allow; the
threads only talk HTTP (apps.endpoints.client, with its retries, rate limit and circuit), and
the run's own thread writes every row. A run ends `done` (every request made or failed for
good, the failures listed per prompt), or `stopped` when an endpoint's circuit opens (it kept
failing) or its key is missing. A cancelled or stopped job can be resumed: the next run asks
only for what is missing, and tries the failed requests again.
"""

import hashlib
import logging
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import combinations
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone

from annotate.broker import broker_check
from annotate.errors import BadRequest, Conflict, Forbidden
from annotate.jobs import (
    ACTIVE,
    RESUMABLE,
    job_cancel,
    job_claim,
    job_held,
    job_requeue,
    job_send,
    job_status,
    job_sweep,
)
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.audit import audit_sample_mark
from apps.batches.import_format import MAX_CANDIDATES
from apps.batches.models import (
    Batch,
    BatchStatus,
    Candidate,
    Comparison,
    Prompt,
    comparison_policy,
)
from apps.batches.signals import batch_stored
from apps.endpoints.client import CircuitOpen, Completion, EndpointClient, EndpointError
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_config, may_manage, request_cost
from apps.generation.models import MAX_SAMPLES, GenerationFailure, GenerationJob, JobStatus, Pairing
from apps.projects.models import Scheme

logger = logging.getLogger(__name__)

Actor = User | AnonymousUser | None

# Sent by name (annotate.broker.send_task): the tasks module imports this one.
RUN_TASK = "apps.generation.tasks.generation_run_task"
LISTWISE_MIN, LISTWISE_MAX = 3, 8
# The most threads one run uses, whatever the endpoints' limits say.
MAX_THREADS = 64
# How often (seconds) a run writes its progress and heartbeat, and looks for a cancel.
BEAT_SECONDS = 1.0
# Prompts read from the database at a time.
PROMPT_CHUNK = 200
NO_JOBS_IN = (BatchStatus.IMPORTING, BatchStatus.FAILED, BatchStatus.CANCELLED)


# --- Starting, cancelling, resuming ------------------------------------------------------------


def _check_may_manage(user: Actor, batch: Batch) -> None:
    if user is None or not may_manage(user, batch.project):
        raise Forbidden("Only staff and the project's leads may generate for its batches.")


def candidates_per_prompt_limit(batch: Batch) -> int:
    """The most responses a prompt of this batch may hold: a listwise ranking shows at most 8,
    a pairwise prompt at most the import's limit."""
    return LISTWISE_MAX if batch.project.scheme == Scheme.LISTWISE else MAX_CANDIDATES


def generation_problems(
    *,
    batch: Batch,
    endpoints: Sequence[ModelEndpoint],
    samples: int,
    pairing: str = Pairing.ALL,
    pairs_per_prompt: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
) -> dict[str, str]:
    """What is wrong with a job's settings, by field ({} when nothing is): the admin's form and
    the API show these next to their fields; `generation_start` refuses them."""
    problems: dict[str, str] = {}
    if batch.status in NO_JOBS_IN:
        problems["batch"] = (
            f"{batch} is {batch.get_status_display().lower()}: only an imported batch can have "
            "responses generated."
        )
    if not endpoints:
        problems["endpoints"] = "Choose at least one endpoint."
    elif len({e.pk for e in endpoints}) != len(endpoints):
        problems["endpoints"] = "An endpoint is listed twice; ask it for more samples instead."
    else:
        foreign = [e.name for e in endpoints if e.project_id not in (None, batch.project_id)]
        if foreign:
            problems["endpoints"] = (
                f"Not an endpoint of this project: {', '.join(foreign)}. Use the project's own "
                "endpoints or shared ones."
            )
    if not 1 <= samples <= MAX_SAMPLES:
        problems["samples"] = f"Ask for 1 to {MAX_SAMPLES} responses per endpoint."
    elif endpoints and "endpoints" not in problems and "batch" not in problems:
        limit = candidates_per_prompt_limit(batch)
        imported = (
            Prompt.objects.filter(batch=batch)
            .annotate(n=Count("candidates"))
            .aggregate(most=Max("n"))["most"]
            or 0
        )
        if imported + samples * len(endpoints) > limit:
            problems["samples"] = (
                f"{samples} x {len(endpoints)} endpoint(s) would give a prompt "
                f"{imported + samples * len(endpoints)} responses (with the {imported} it has); "
                f"at most {limit}."
            )
    listwise = batch.project.scheme == Scheme.LISTWISE
    if pairing not in Pairing.values:
        problems["pairing"] = (
            f"Unknown pairing {pairing!r}; use one of {', '.join(Pairing.values)}."
        )
    elif listwise and pairing != Pairing.ALL:
        problems["pairing"] = "A listwise project ranks all of a prompt's responses at once."
    elif pairing == Pairing.RANDOM and not pairs_per_prompt:
        problems["pairs_per_prompt"] = "Say how many random pairs per prompt (k)."
    elif pairing == Pairing.MODELS and len(endpoints) < 2:
        problems["pairing"] = "One pair per pair of models needs at least two endpoints."
    if pairs_per_prompt is not None and not 1 <= pairs_per_prompt <= 120:
        problems["pairs_per_prompt"] = "k must be 1 to 120."
    if temperature is not None and not 0 <= temperature <= 2:
        problems["temperature"] = "The temperature must be 0 to 2."
    if top_p is not None and not 0 < top_p <= 1:
        problems["top_p"] = "top_p must be above 0 and at most 1."
    if max_tokens is not None and not 1 <= max_tokens <= 1_000_000:
        problems["max_tokens"] = "max_tokens must be 1 to 1,000,000."
    return problems


def generation_start(
    *,
    batch: Batch,
    endpoints: Sequence[ModelEndpoint],
    samples: int,
    by: Actor,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    system_prompt: str = "",
    pairing: str = Pairing.ALL,
    pairs_per_prompt: int | None = None,
) -> GenerationJob:
    """Creates a job and sends it to the workers (without a broker, it runs here and now).

    Forbidden unless `by` leads the batch's project (or is staff); BadRequest with the problems
    of `generation_problems`; Conflict while another job of the batch is queued or running;
    BrokerUnavailable (nothing created) when the broker is gone.
    """
    _check_may_manage(by, batch)
    problems = generation_problems(
        batch=batch,
        endpoints=endpoints,
        samples=samples,
        pairing=pairing,
        pairs_per_prompt=pairs_per_prompt,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
    )
    if problems:
        raise GenerationInvalid(problems)
    broker_check()
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        _refuse_second_job(locked)
        job = GenerationJob.objects.create(
            batch=locked,
            samples=samples,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
            system_prompt=system_prompt,
            pairing=pairing,
            pairs_per_prompt=pairs_per_prompt if pairing == Pairing.RANDOM else None,
            created_by=by if isinstance(by, User) else None,
            heartbeat_at=timezone.now(),
        )
        job.endpoints.set(endpoints)
        _count_totals(job)
        audit_record(
            actor=by,
            action=AuditAction.GENERATION_STARTED,
            project=batch.project,
            target=job,
            details=_describe(job, endpoints),
        )
        transaction.on_commit(lambda: _send(job.pk, new=True))
    job.refresh_from_db()
    return job


def endpoints_named(batch: Batch, names: Sequence[str]) -> list[ModelEndpoint]:
    """The endpoints a job of the batch may use, by name: the project's own before a shared one
    of the same name. GenerationInvalid naming those that are neither."""
    usable = ModelEndpoint.objects.filter(
        Q(project=batch.project) | Q(project__isnull=True), name__in=names
    )
    found: dict[str, ModelEndpoint] = {}
    for endpoint in sorted(usable, key=lambda e: e.project_id is None):
        found.setdefault(endpoint.name, endpoint)
    unknown = [name for name in names if name not in found]
    if unknown:
        raise GenerationInvalid(
            {"endpoints": f"No endpoint of this project is named {', '.join(unknown)}."}
        )
    return [found[name] for name in names]


class GenerationInvalid(BadRequest):
    """The job's settings have problems, by field (`problems`)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems.values()))


def _refuse_second_job(batch: Batch) -> None:
    running = GenerationJob.objects.filter(batch=batch, status__in=ACTIVE).first()
    if running is not None:
        raise Conflict(
            f"Generation job {running.pk} of this batch is {running.status}: wait for it, or "
            "cancel it, before starting another."
        )


def _describe(job: GenerationJob, endpoints: Sequence[ModelEndpoint]) -> dict[str, Any]:
    return {
        "batch": job.batch_id,
        "endpoints": [e.name for e in endpoints],
        "samples": job.samples,
        "pairing": job.pairing,
        "pairs_per_prompt": job.pairs_per_prompt,
        "temperature": job.temperature,
        "top_p": job.top_p,
        "max_tokens": job.max_tokens,
        "seed": job.seed,
        "system_prompt": bool(job.system_prompt),
        "requests": job.requests_total,
    }


def _send(job_id: int, *, new: bool) -> None:
    job_send(RUN_TASK, GenerationJob, job_id, new=new)


def generation_cancel(*, job: GenerationJob, by: Actor) -> GenerationJob:
    """Stops a queued or running job: its run stops asking within a second or so, and keeps the
    responses already on their way. What it generated stays; it can be resumed."""
    _check_may_manage(by, job.batch)
    with transaction.atomic():
        current = job_cancel(GenerationJob, job.pk)
        audit_record(
            actor=by,
            action=AuditAction.GENERATION_CANCELLED,
            project=job.batch.project,
            target=current,
            details=_progress_details(current),
        )
    return current


def generation_resume(*, job: GenerationJob, by: Actor) -> GenerationJob:
    """Queues a cancelled, stopped or done job again: it asks only for the responses still
    missing (the failed ones among them) and forms the comparisons still to form."""
    _check_may_manage(by, job.batch)
    broker_check()
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=job.batch_id)
        if GenerationJob.objects.filter(pk=job.pk, status__in=RESUMABLE).exists():
            _refuse_second_job(batch)
        current = job_requeue(GenerationJob, job.pk)
        _count_totals(current)
        audit_record(
            actor=by,
            action=AuditAction.GENERATION_RESUMED,
            project=batch.project,
            target=current,
            details=_progress_details(current),
        )
        transaction.on_commit(lambda: _send(current.pk, new=False))
    current.refresh_from_db()
    return current


def _progress_details(job: GenerationJob) -> dict[str, Any]:
    return {
        "requests": job.requests_total,
        "done": job.requests_done,
        "failed": job.requests_failed,
        "comparisons": job.comparisons_made,
        "cost": str(job.cost),
    }


# --- What a job covers ---------------------------------------------------------------------


def _covered(job: GenerationJob) -> Q:
    """The candidates that answer the job's requests (whichever run or job made them)."""
    return Q(
        prompt__batch_id=job.batch_id,
        endpoint__in=job.endpoints.all(),
        sample_index__lt=job.samples,
    )


def _count_totals(job: GenerationJob) -> None:
    """Sets the job's totals and what is done, from the database. Prompts settled start again
    from 0: a run settles every prompt (at once, those that have all their responses)."""
    prompts = Prompt.objects.filter(batch_id=job.batch_id).count()
    endpoints = job.endpoints.count()
    GenerationJob.objects.filter(pk=job.pk).update(
        prompts_total=prompts,
        prompts_done=0,
        requests_total=prompts * endpoints * job.samples,
        requests_done=Candidate.objects.filter(_covered(job)).count(),
        requests_failed=GenerationFailure.objects.filter(job=job).count(),
    )


def batch_usage(batch: Batch) -> dict[str, Any]:
    """What the batch's generated candidates used and cost: tokens in and out, the estimated
    cost (of those whose endpoint has prices) and how many candidates have no estimate."""
    generated = Candidate.objects.filter(prompt__batch=batch, endpoint__isnull=False)
    sums = generated.aggregate(
        n=Count("pk"),
        tokens_in=Sum("prompt_tokens"),
        tokens_out=Sum("completion_tokens"),
        spent=Sum("cost"),
        unpriced=Count("pk", filter=Q(cost__isnull=True)),
    )
    return {
        "candidates": sums["n"],
        "prompt_tokens": sums["tokens_in"] or 0,
        "completion_tokens": sums["tokens_out"] or 0,
        "cost": sums["spent"] or Decimal(0),
        "unpriced": sums["unpriced"],
    }


def job_failures_by_prompt(job: GenerationJob, *, limit: int = 200) -> list[dict[str, Any]]:
    """The job's failed requests, grouped by prompt (its external id), the first `limit`."""
    rows = (
        GenerationFailure.objects.filter(job=job)
        .select_related("prompt", "endpoint")
        .order_by("prompt_id", "endpoint_id", "sample_index")[:limit]
    )
    grouped: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault(
            row.prompt_id, {"prompt": row.prompt.external_id, "failures": []}
        )
        entry["failures"].append(
            {
                "endpoint": row.endpoint.name,
                "sample": row.sample_index,
                "error": row.kind,
                "detail": row.detail,
                "attempts": row.attempts,
            }
        )
    return list(grouped.values())


# --- Running -----------------------------------------------------------------------------------


def generation_claim(*, job_id: int) -> int | None:
    """Gives the job to this run (annotate.jobs.job_claim); its attempt number, or None."""
    return job_claim(GenerationJob, job_id, stale_after=settings.GENERATION_STALE_AFTER)


def _held(job_id: int, attempt: int) -> Any:
    return job_held(GenerationJob, job_id, attempt)


def generation_run(*, job_id: int) -> str:
    """Runs a job, if this run may claim it; returns its status afterwards ("" when deleted).
    Running it twice is harmless."""
    attempt = generation_claim(job_id=job_id)
    if attempt is None:
        status = job_status(GenerationJob, job_id)
        logger.info("generation job %s not claimed (status %s)", job_id, status)
        return status
    job = GenerationJob.objects.select_related("batch__project").get(pk=job_id)
    _count_totals(job)
    run = _Run(job, attempt)
    try:
        run.run()
    finally:
        run.close()
    return job_status(GenerationJob, job_id)


@dataclass(frozen=True)
class _Request:
    prompt_id: int
    endpoint_id: int
    sample_index: int
    messages: list[dict[str, Any]]


@dataclass
class _Tally:
    """What a run did since it last wrote its progress."""

    done: int = 0
    failed: int = 0
    unfailed: int = 0
    prompts: int = 0
    comparisons: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))

    def any(self) -> bool:
        return bool(self.done or self.failed or self.unfailed or self.prompts or self.comparisons)


class _Run:
    def __init__(self, job: GenerationJob, attempt: int) -> None:
        self.job = job
        self.attempt = attempt
        self.endpoints = {e.pk: e for e in job.endpoints.all()}
        self.clients: dict[int, EndpointClient] = {}
        self.tally = _Tally()
        self.stop_reason = ""  # why the job stops here (an endpoint kept failing)
        self.superseded = False
        self.last_beat = time.monotonic()
        self.left: dict[int, int] = {}  # requests still out, per prompt
        self.failed_before: set[tuple[int, int, int]] = set()
        self.listwise = job.batch.project.scheme == Scheme.LISTWISE

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    # The run: prompts in id order, each prompt's requests together, so that prompts are settled
    # (and get their comparisons) from the first one on.
    def run(self) -> None:
        if not self.endpoints:
            self._end(JobStatus.STOPPED, "its endpoints were deleted")
            return
        try:
            for endpoint in self.endpoints.values():
                self.clients[endpoint.pk] = EndpointClient(endpoint_config(endpoint))
        except BadRequest as error:  # a key that is not set where the worker runs
            self._end(JobStatus.STOPPED, str(error))
            return
        width = min(MAX_THREADS, sum(e.max_concurrency for e in self.endpoints.values()))
        pending: dict[Future[Completion], _Request] = {}
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="generate") as pool:
            for request in self._requests():
                while len(pending) >= width * 2 and not self._stopping():
                    self._collect(pending, block=True)
                if self._stopping():
                    break
                pending[pool.submit(self._ask, request)] = request
                self._collect(pending, block=False)
            if self._stopping():
                for future in pending:
                    future.cancel()
            while pending:
                self._collect(pending, block=True)
        self._beat(final=True)
        if self.superseded:
            _recount_done(self.job)
            logger.info("generation job %s attempt %s superseded", self.job.pk, self.attempt)
            return
        if self.stop_reason:
            self._end(JobStatus.STOPPED, self.stop_reason)
            return
        failed = GenerationFailure.objects.filter(job=self.job).count()
        self._end(
            JobStatus.DONE,
            f"{failed} request(s) failed; see the list, and resume to try them again"
            if failed
            else "",
        )

    def _stopping(self) -> bool:
        return self.superseded or bool(self.stop_reason)

    def _requests(self) -> Iterator[_Request]:
        job = self.job
        wanted = [
            (endpoint_id, index) for endpoint_id in self.endpoints for index in range(job.samples)
        ]
        prompts = Prompt.objects.filter(batch_id=job.batch_id).order_by("pk")
        last = 0
        while not self._stopping():
            chunk = list(prompts.filter(pk__gt=last).values_list("pk", "content")[:PROMPT_CHUNK])
            if not chunk:
                return
            last = chunk[-1][0]
            ids = [pk for pk, _ in chunk]
            have = set(
                Candidate.objects.filter(
                    prompt_id__in=ids, endpoint_id__in=self.endpoints, sample_index__lt=job.samples
                ).values_list("prompt_id", "endpoint_id", "sample_index")
            )
            self.failed_before |= set(
                GenerationFailure.objects.filter(job=job, prompt_id__in=ids).values_list(
                    "prompt_id", "endpoint_id", "sample_index"
                )
            )
            for pk, content in chunk:
                missing = [(e, i) for e, i in wanted if (pk, e, i) not in have]
                if not missing:
                    self._settle(pk)
                    continue
                self.left[pk] = len(missing)
                messages = prompt_messages(content, job.system_prompt)
                for endpoint_id, index in missing:
                    yield _Request(pk, endpoint_id, index, messages)
                if self._stopping():
                    return

    def _ask(self, request: _Request) -> Completion:
        """In a pool thread: HTTP only, no database."""
        job = self.job
        return self.clients[request.endpoint_id].chat(
            request.messages,
            temperature=job.temperature,
            top_p=job.top_p,
            max_tokens=job.max_tokens,
            seed=None if job.seed is None else job.seed + request.sample_index,
        )

    def _collect(self, pending: dict[Future[Completion], _Request], *, block: bool) -> None:
        if block:
            done, _ = wait(pending, timeout=BEAT_SECONDS, return_when=FIRST_COMPLETED)
        else:
            done = {future for future in pending if future.done()}
        for future in done:
            request = pending.pop(future)
            if future.cancelled():
                continue
            try:
                completion = future.result()
            except CircuitOpen:
                endpoint = self.endpoints[request.endpoint_id]
                self.stop_reason = (
                    f"{endpoint.name} kept failing, so the job stopped (its circuit opened); "
                    "resume it when the endpoint is back"
                )
                continue
            except EndpointError as error:
                self._failed(request, error)
            except Exception as error:  # a bug or an odd answer: listed, never fatal to the job
                logger.exception("generation job %s: %s failed", self.job.pk, request)
                self._failed(request, EndpointError("error", type(error).__name__))
            else:
                self._store(request, completion)
            self._settled_one(request.prompt_id)
        if time.monotonic() - self.last_beat >= BEAT_SECONDS:
            self._beat()

    def _store(self, request: _Request, completion: Completion) -> None:
        endpoint = self.endpoints[request.endpoint_id]
        job = self.job
        cost = request_cost(endpoint, completion)
        params: dict[str, Any] = {
            "endpoint": endpoint.name,
            "temperature": job.temperature,
            "top_p": job.top_p,
            "max_tokens": job.max_tokens,
            "seed": None if job.seed is None else job.seed + request.sample_index,
        }
        if job.system_prompt:
            params["system_prompt_sha256"] = hashlib.sha256(job.system_prompt.encode()).hexdigest()[
                :16
            ]
        params = {key: value for key, value in params.items() if value is not None}
        try:
            with transaction.atomic():
                Candidate.objects.create(
                    prompt_id=request.prompt_id,
                    # Neutral: annotators see response ids, which must not name the model.
                    external_id=f"g-{secrets.token_hex(6)}",
                    text=completion.text,
                    model=endpoint.model,
                    params=params,
                    metadata={"generation_job": job.pk},
                    endpoint=endpoint,
                    sample_index=request.sample_index,
                    finish_reason=(completion.finish_reason or "")[:32],
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    latency_ms=completion.latency_ms,
                    cost=cost,
                )
        except IntegrityError:
            # Another run (a redelivery, a run that was superseded) filled it meanwhile.
            logger.info("generation job %s: %s answered already", job.pk, request)
            return
        key = (request.prompt_id, request.endpoint_id, request.sample_index)
        if key in self.failed_before:
            GenerationFailure.objects.filter(
                job=job,
                prompt_id=request.prompt_id,
                endpoint_id=request.endpoint_id,
                sample_index=request.sample_index,
            ).delete()
            self.failed_before.discard(key)
            self.tally.unfailed += 1
        self.tally.done += 1
        self.tally.prompt_tokens += completion.prompt_tokens or 0
        self.tally.completion_tokens += completion.completion_tokens or 0
        self.tally.cost += cost or 0

    def _failed(self, request: _Request, error: EndpointError) -> None:
        key = (request.prompt_id, request.endpoint_id, request.sample_index)
        GenerationFailure.objects.update_or_create(
            job=self.job,
            prompt_id=request.prompt_id,
            endpoint_id=request.endpoint_id,
            sample_index=request.sample_index,
            defaults={
                "kind": error.kind[:32],
                "detail": str(error)[:500],
                "attempts": getattr(error, "attempts", 1),
            },
        )
        if key not in self.failed_before:
            self.failed_before.add(key)
            self.tally.failed += 1

    def _settled_one(self, prompt_id: int) -> None:
        self.left[prompt_id] -= 1
        if self.left[prompt_id] == 0 and not self._stopping():
            del self.left[prompt_id]
            self._settle(prompt_id)

    def _settle(self, prompt_id: int) -> None:
        """Every request of the prompt is answered or failed: its comparisons are formed."""
        self.tally.prompts += 1
        self.tally.comparisons += form_comparisons(self.job, prompt_id, listwise=self.listwise)

    def _beat(self, *, final: bool = False) -> None:
        """Writes the progress since the last beat, if this run still holds the job; notices a
        cancel or a takeover otherwise."""
        self.last_beat = time.monotonic()
        tally, self.tally = self.tally, _Tally()
        spent = {
            "prompt_tokens": F("prompt_tokens") + tally.prompt_tokens,
            "completion_tokens": F("completion_tokens") + tally.completion_tokens,
            "cost": F("cost") + tally.cost,
        }
        held = _held(self.job.pk, self.attempt).update(
            heartbeat_at=timezone.now(),
            requests_done=F("requests_done") + tally.done,
            requests_failed=F("requests_failed") + tally.failed - tally.unfailed,
            prompts_done=F("prompts_done") + tally.prompts,
            comparisons_made=F("comparisons_made") + tally.comparisons,
            **spent,
        )
        if not held:
            # Cancelled, or taken over: what was spent is the job's all the same.
            self.superseded = True
            if tally.prompt_tokens or tally.completion_tokens or tally.cost:
                GenerationJob.objects.filter(pk=self.job.pk).update(**spent)

    def _end(self, status: str, note: str) -> None:
        with transaction.atomic():
            ended = _held(self.job.pk, self.attempt).update(
                status=status, note=note[:500], finished_at=timezone.now()
            )
            if not ended:
                return
            job = GenerationJob.objects.get(pk=self.job.pk)
            audit_record(
                actor=job.created_by,
                action=AuditAction.GENERATION_ENDED,
                project=self.job.batch.project,
                target=job,
                details={"status": status, "note": note, **_progress_details(job)},
            )
            transaction.on_commit(
                lambda: batch_stored.send(sender=Batch, batch_id=self.job.batch_id)
            )
        logger.info("generation job %s %s: %s", self.job.pk, status, note or "all made")


def _recount_done(job: GenerationJob) -> None:
    GenerationJob.objects.filter(pk=job.pk).update(
        requests_done=Candidate.objects.filter(_covered(job)).count(),
        requests_failed=GenerationFailure.objects.filter(job=job).count(),
    )


def prompt_messages(content: Any, system_prompt: str = "") -> list[dict[str, Any]]:
    """The chat messages for a prompt: its text as the user's message, or its conversation; the
    job's system prompt first, unless the conversation has a system message of its own."""
    if isinstance(content, str):
        messages = [{"role": "user", "content": content}]
    else:
        messages = [{"role": m["role"], "content": m["content"]} for m in content]
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


# --- Forming comparisons -----------------------------------------------------------------------


def form_comparisons(job: GenerationJob, prompt_id: int, *, listwise: bool) -> int:
    """Forms the prompt's comparisons the job's pairing asks for among all of its responses
    (imported and generated, not a honeypot's), leaving out those that exist; returns how many
    it formed. Idempotent: the prompt's row is locked while it looks and writes, and the same
    prompt always draws the same random pairs."""
    with transaction.atomic():
        prompt = Prompt.objects.select_for_update().filter(pk=prompt_id).first()
        if prompt is None:  # deleted meanwhile
            return 0
        candidates = list(
            Candidate.objects.filter(prompt_id=prompt_id, degradation="")
            .order_by("pk")
            .values_list("pk", "model")
        )
        existing = Comparison.objects.filter(prompt_id=prompt_id, is_gold=False)
        if listwise:
            if len(candidates) < LISTWISE_MIN or existing.exists():
                return 0
            ids = [pk for pk, _ in candidates[:LISTWISE_MAX]]
            rows: list[tuple[int, int, list[int] | None]] = [(ids[0], ids[1], ids)]
        else:
            taken = {
                frozenset(pair)
                for pair in Comparison.objects.filter(prompt_id=prompt_id).values_list(
                    "candidate_a_id", "candidate_b_id"
                )
            }
            pairs = [
                (a, b)
                for a, b in pairs_for(job, prompt_id, candidates)
                if frozenset((a, b)) not in taken
            ]
            rows = [(a, b, None) for a, b in pairs]
        if not rows:
            return 0
        # Held until the commit: a change of the policy then waits and updates these rows too.
        policy = comparison_policy(job.batch.project_id, hold=True)
        Comparison.objects.bulk_create(
            [
                Comparison(
                    policy=policy,
                    project_id=job.batch.project_id,
                    batch_id=job.batch_id,
                    prompt_id=prompt_id,
                    candidate_a_id=a,
                    candidate_b_id=b,
                    candidate_ids=ranked,
                )
                for a, b, ranked in rows
            ]
        )
        Batch.objects.filter(pk=job.batch_id).update(
            comparison_count=F("comparison_count") + len(rows)
        )
        if job.batch.project.audit_rate > 0:
            audit_sample_mark(project=job.batch.project, prompt_id=prompt_id)
    return len(rows)


def pairs_for(
    job: GenerationJob, prompt_id: int, candidates: list[tuple[int, str]]
) -> list[tuple[int, int]]:
    """The pairs (candidate ids, lower first) the job's pairing draws from a prompt's responses
    [(id, model)]: every pair; k of them at random; or, for each pair of models, one response of
    each at random. The draw is seeded by the batch and the prompt, so it is the same every time."""
    everything = list(combinations([pk for pk, _ in candidates], 2))
    rng = random.Random(f"{job.batch_id}:{prompt_id}")  # noqa: S311 (a draw, not a secret)
    if job.pairing == Pairing.RANDOM:
        k = job.pairs_per_prompt or 0
        return sorted(rng.sample(everything, min(k, len(everything))))
    if job.pairing == Pairing.MODELS:
        by_model: dict[str, list[int]] = {}
        for pk, model in candidates:
            by_model.setdefault(model, []).append(pk)
        pairs = []
        for first, second in combinations(sorted(by_model), 2):
            a, b = rng.choice(by_model[first]), rng.choice(by_model[second])
            pairs.append((min(a, b), max(a, b)))
        return pairs
    return everything


# --- The sweep ---------------------------------------------------------------------------------


def generation_sweep(now: datetime | None = None) -> dict[str, int]:
    """The beat job: re-sends a queued job whose message was lost, and re-queues a running job
    whose heartbeat stopped (its worker died) while it has runs left, or stops it saying why."""
    return job_sweep(
        GenerationJob,
        RUN_TASK,
        stale_after=settings.GENERATION_STALE_AFTER,
        max_attempts=settings.GENERATION_MAX_ATTEMPTS,
        now=now,
    )
