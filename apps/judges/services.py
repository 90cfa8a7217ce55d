"""AI judges: an endpoint and a judging prompt that label a batch's comparisons in the
background, each in both orders, as an account of role "ai".

Recording. A judge that does not count toward the overlap (the default) labels every
comparison of the batch besides the people: its judgment is an Assignment (submitted) and a
Judgment with source "ai", written without touching the comparison's counters, so no figure
about people moves and no person loses a slot. A judge that counts toward the overlap takes its
work through the queue as a person does (apps.judging.queue: a lease, then the submit that
counts the vote), preferring the batch's comparisons in order; its judgments are marked "ai" in
the submit's transaction.

Judging one comparison. The prompt asks about the pair as shown (candidate A as "Assistant A")
and swapped; each reply is parsed strictly (apps.judges.verdicts); an unparsable reply is asked
again once, then the comparison is recorded as failed (a Verdict with `failure` "unparsable"),
never guessed. Both orders combined (verdicts.combine): agreeing orders give their outcome;
disagreeing ones a tie, or no vote ("inconsistent"), as the judge says. Every Verdict keeps
both raw replies, the parsed verdicts and whether the orders agreed.

Running a job is as for generation jobs (apps.generation.services): claimed by a conditional
UPDATE, a heartbeat each second conditional on the attempt, cancel and resume, the sweep
re-queues a job whose worker died; idempotent per (judge, comparison) by Verdict's unique
constraint.
"""

import logging
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

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
from apps.audit.services import audit_record, changes_of
from apps.batches.models import Batch, BatchStatus, Comparison, GoldAnswer
from apps.endpoints.client import Completion, EndpointClient, EndpointError
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_config, may_manage, request_cost
from apps.judges.models import Judge, JudgeJob, JudgeJobStatus, Verdict
from apps.judges.prompts import (
    Template,
    build_both_orders,
    default_template,
    template_problem,
    template_version,
)
from apps.judges.verdicts import (
    INCONSISTENT,
    Combined,
    Policy,
    Spec,
    VerdictError,
    combine,
    parse_verdict,
    policy_problem,
    spec_for,
)
from apps.judging.answers import on_screen
from apps.judging.models import Assignment, AssignmentStatus, Choice, Judgment, Source
from apps.judging.queue import Preference, assignment_next, judgment_submit
from apps.projects.models import Membership, Project, Role, Scheme

logger = logging.getLogger(__name__)

Actor = User | AnonymousUser | None
RUN_TASK = "apps.judges.tasks.judging_run_task"
MAX_THREADS = 64
BEAT_SECONDS = 1.0
CHUNK = 200
AUDITED = (
    "name",
    "people_first_where_unsure",
    "endpoint",
    "system_prompt",
    "user_prompt",
    "template_version",
    "disagreement",
    "temperature",
    "max_tokens",
    "counts_toward_overlap",
)


class JudgeInvalid(BadRequest):
    """The judge's or the job's settings have problems, by field (`problems`)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__(" ".join(problems.values()))


def _check_may_manage(user: Actor, project: Project) -> None:
    if user is None or not may_manage(user, project):
        raise Forbidden("Only staff and the project's leads may manage its AI judges.")


def judge_template(judge: Judge, spec: Spec | None = None) -> Template:
    """The judge's prompt: its own texts where it has them, else the default for the scheme."""
    default = default_template(spec or spec_for(judge.project))
    return Template(
        system=judge.system_prompt or default.system, user=judge.user_prompt or default.user
    )


def judge_problems(judge: Judge) -> dict[str, str]:
    """What is wrong with a judge's settings, by field ({} when nothing is)."""
    problems: dict[str, str] = {}
    project = judge.project
    if project.scheme == Scheme.LISTWISE:
        problems["project"] = (
            "A listwise project cannot have an AI judge yet: its rankings are judged by people."
        )
        return problems
    if judge.endpoint_id and judge.endpoint.project_id not in (None, project.pk):
        problems["endpoint"] = "Use an endpoint of this project, or a shared one."
    spec = spec_for(project)
    if problem := template_problem(judge_template(judge, spec), spec):
        problems["user_prompt"] = problem
    if problem := policy_problem(spec, judge.disagreement):
        problems["disagreement"] = problem
    if not 0 <= judge.temperature <= 2:
        problems["temperature"] = "The temperature must be 0 to 2."
    if not 16 <= judge.max_tokens <= 100_000:
        problems["max_tokens"] = "max_tokens must be 16 to 100,000."
    return problems


def _values(judge: Judge) -> dict[str, Any]:
    values = {name: getattr(judge, name) for name in AUDITED}
    values["endpoint"] = judge.endpoint.name if judge.endpoint_id else None
    return values


def _account_for(project: Project, name: str) -> User:
    """A new account of role "ai" in the project: it never logs in."""
    base = f"ai-{project.slug}-{slugify(name) or 'judge'}"[:140]
    username, n = base, 1
    while User.objects.filter(username=username).exists():
        n += 1
        username = f"{base}-{n}"
    account = User(username=username, first_name=name[:150])
    account.set_unusable_password()
    account.save()
    Membership.objects.create(project=project, user=account, role=Role.AI)
    return account


def judge_save(judge: Judge, *, by: Actor) -> Judge:
    """Creates or changes a judge, for staff and the project's leads; a new judge gets its
    account. Its prompt's version is recomputed; the change is audited with what changed."""
    _check_may_manage(by, judge.project)
    if judge.pk is not None:
        was = Judge.objects.filter(pk=judge.pk).values_list("project_id", flat=True).first()
        if was is not None and was != judge.project_id:
            # Its account, votes and verdicts belong to the project it was made for.
            raise JudgeInvalid({"project": "A judge stays in its project: add a new one."})
    if problems := judge_problems(judge):
        raise JudgeInvalid(problems)
    judge.template_version = template_version(judge_template(judge))
    with transaction.atomic():
        before = None
        if judge.pk is not None:
            old = Judge.objects.select_for_update().select_related("endpoint").get(pk=judge.pk)
            before = _values(old)
        else:
            judge.account = _account_for(judge.project, judge.name)
            judge.created_by = by if isinstance(by, User) else None
        judge.save()
        after = _values(judge)
        details = after if before is None else {"changes": changes_of(before, after)}
        audit_record(
            actor=by,
            action=AuditAction.JUDGE_SAVED,
            project=judge.project,
            target=judge,
            details={"created": before is None, **details},
        )
    return judge


# --- Jobs ------------------------------------------------------------------------------------


def judging_start(*, judge: Judge, batch: Batch, by: Actor) -> JudgeJob:
    """Starts a judging job of the batch (the judge's project's), in the background."""
    _check_may_manage(by, judge.project)
    if batch.project_id != judge.project_id:
        raise JudgeInvalid({"batch": "Choose a batch of the judge's project."})
    if batch.status in (BatchStatus.IMPORTING, BatchStatus.FAILED, BatchStatus.CANCELLED):
        raise JudgeInvalid({"batch": f"{batch} is {batch.status}: nothing to judge."})
    broker_check()
    with transaction.atomic():
        Batch.objects.select_for_update().get(pk=batch.pk)
        _refuse_second_job(judge)
        job = JudgeJob.objects.create(
            judge=judge,
            batch=batch,
            created_by=by if isinstance(by, User) else None,
            heartbeat_at=timezone.now(),
            comparisons_total=Comparison.objects.filter(batch=batch).count(),
        )
        audit_record(
            actor=by,
            action=AuditAction.JUDGING_STARTED,
            project=judge.project,
            target=job,
            details={"judge": judge.name, "batch": batch.pk, "comparisons": job.comparisons_total},
        )
        transaction.on_commit(lambda: _send(job.pk, new=True))
    job.refresh_from_db()
    return job


def _refuse_second_job(judge: Judge) -> None:
    running = JudgeJob.objects.filter(judge=judge, status__in=ACTIVE).first()
    if running is not None:
        raise Conflict(
            f"Judging job {running.pk} of {judge} is {running.status}: wait for it, or cancel "
            "it, before starting another."
        )


def _send(job_id: int, *, new: bool) -> None:
    job_send(RUN_TASK, JudgeJob, job_id, new=new)


def judging_cancel(*, job: JudgeJob, by: Actor) -> JudgeJob:
    _check_may_manage(by, job.judge.project)
    with transaction.atomic():
        current = job_cancel(JudgeJob, job.pk)
        audit_record(
            actor=by,
            action=AuditAction.JUDGING_CANCELLED,
            project=job.judge.project,
            target=current,
            details=_progress(current),
        )
    return current


def judging_resume(*, job: JudgeJob, by: Actor) -> JudgeJob:
    _check_may_manage(by, job.judge.project)
    broker_check()
    with transaction.atomic():
        if JudgeJob.objects.filter(pk=job.pk, status__in=RESUMABLE).exists():
            _refuse_second_job(job.judge)
        current = job_requeue(JudgeJob, job.pk)
        audit_record(
            actor=by,
            action=AuditAction.JUDGING_RESUMED,
            project=job.judge.project,
            target=current,
            details=_progress(current),
        )
        transaction.on_commit(lambda: _send(current.pk, new=False))
    current.refresh_from_db()
    return current


def _progress(job: JudgeJob) -> dict[str, Any]:
    return {
        "comparisons": job.comparisons_total,
        "done": job.comparisons_done,
        "failed": job.comparisons_failed,
        "inconsistent": job.inconsistent,
        "cost": str(job.cost),
    }


def judging_claim(*, job_id: int) -> int | None:
    return job_claim(JudgeJob, job_id, stale_after=settings.GENERATION_STALE_AFTER)


def _held(job_id: int, attempt: int) -> Any:
    return job_held(JudgeJob, job_id, attempt)


def judging_run(*, job_id: int) -> str:
    """Runs a job if this run may claim it; returns its status afterwards."""
    attempt = judging_claim(job_id=job_id)
    if attempt is None:
        return job_status(JudgeJob, job_id)
    job = JudgeJob.objects.select_related("judge__project", "judge__endpoint", "batch").get(
        pk=job_id
    )
    verdicts = Verdict.objects.filter(judge=job.judge, comparison__batch=job.batch)
    JudgeJob.objects.filter(pk=job_id).update(
        comparisons_total=Comparison.objects.filter(
            batch=job.batch, candidate_ids__isnull=True
        ).count(),
        comparisons_done=verdicts.filter(failure="").count(),
        comparisons_failed=verdicts.exclude(failure="").count(),
        inconsistent=verdicts.filter(failure="", judgment__isnull=True).count(),
    )
    _Run(job, attempt).run()
    return str(JudgeJob.objects.values_list("status", flat=True).get(pk=job_id))


def _recount(job: JudgeJob) -> None:
    """The job's counts from its verdicts (a failed comparison tried again is counted once)."""
    verdicts = Verdict.objects.filter(judge_id=job.judge_id, comparison__batch_id=job.batch_id)
    JudgeJob.objects.filter(pk=job.pk).update(
        comparisons_done=verdicts.filter(failure="").count(),
        comparisons_failed=verdicts.exclude(failure="").count(),
        inconsistent=verdicts.filter(failure="", judgment__isnull=True).count(),
    )


def judging_sweep(now: datetime | None = None) -> dict[str, int]:
    """The beat job: re-sends lost jobs and re-queues those whose worker died."""
    return job_sweep(
        JudgeJob,
        RUN_TASK,
        stale_after=settings.GENERATION_STALE_AFTER,
        max_attempts=settings.GENERATION_MAX_ATTEMPTS,
        now=now,
    )


# --- One comparison ----------------------------------------------------------------------------


@dataclass
class Reading:
    """What the judge answered for one comparison, both orders (in a pool thread)."""

    comparison_id: int
    raw: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))
    parsed: list[Any] = field(default_factory=list)
    failure: str = ""
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None


def _ask_one(
    client: EndpointClient,
    judge: Judge,
    spec: Spec,
    messages: list[dict[str, Any]],
    reading: Reading,
    order: int,
) -> Any:
    """One order: asked, parsed strictly; an unparsable reply is asked again once."""
    for attempt in (1, 2):
        completion = client.chat(
            messages, temperature=judge.temperature, max_tokens=judge.max_tokens
        )
        _spend(reading, judge.endpoint, completion)
        reading.raw[order].append(completion.text)
        try:
            return parse_verdict(completion.text, spec)
        except VerdictError as error:
            if attempt == 2:
                raise
            logger.info("judge %s: unparsable reply (%s); asking again", judge.pk, error)
    raise AssertionError("unreachable")


def _spend(reading: Reading, endpoint: ModelEndpoint, completion: Completion) -> None:
    reading.prompt_tokens += completion.prompt_tokens or 0
    reading.completion_tokens += completion.completion_tokens or 0
    cost = request_cost(endpoint, completion)
    if cost is not None:
        reading.cost = (reading.cost or Decimal(0)) + cost


def judge_pair(
    client: EndpointClient,
    judge: Judge,
    spec: Spec,
    template: Template,
    comparison_id: int,
    prompt: Any,
    answer_a: str,
    answer_b: str,
) -> Reading:
    """Asks the judge about one pair in both orders; HTTP only, no database."""
    reading = Reading(comparison_id)
    first, second = build_both_orders(spec, template, prompt, answer_a, answer_b)
    try:
        reading.parsed.append(_ask_one(client, judge, spec, first, reading, 0))
        reading.parsed.append(_ask_one(client, judge, spec, second, reading, 1))
    except VerdictError as error:
        reading.failure, reading.detail = "unparsable", str(error)[:500]
    except EndpointError as error:
        reading.failure, reading.detail = error.kind[:32], str(error)[:500]
    return reading


def _verdict_json(verdict: Any) -> dict[str, Any]:
    return {
        "overall": verdict.overall.as_json(),
        "criteria": {name: o.as_json() for name, o in verdict.criteria.items()},
    }


def _stored(combined: Combined) -> dict[str, Any]:
    """The combined outcome as Judgment stores it (oriented to the candidates)."""
    return {
        "option": combined.overall.outcome.option,
        "strength": combined.overall.outcome.strength,
        "criteria": {
            name: {"option": a.outcome.option, "strength": a.outcome.strength}
            for name, a in combined.criteria.items()
        },
    }


def _gold_correct(comparison: Comparison, option: str) -> bool | None:
    if not comparison.is_gold:
        return None
    answers = {
        GoldAnswer.A.value: "a",
        GoldAnswer.B.value: "b",
        GoldAnswer.TIE.value: "tie",
        GoldAnswer.BOTH_BAD.value: "both_bad",
    }
    return bool(answers.get(str(comparison.gold_answer)) == option)


def ai_judgment_record(
    *, judge: Judge, comparison: Comparison, stored: dict[str, Any], now: datetime
) -> Judgment:
    """A judge's vote that does not count toward the overlap: an Assignment (submitted) and a
    Judgment of source "ai", A shown on the left, the comparison's counters untouched."""
    option = stored["option"]
    choice = {"a": Choice.LEFT, "b": Choice.RIGHT}.get(option, option)
    assignment = Assignment.objects.create(
        project=judge.project,
        comparison=comparison,
        annotator=judge.account,
        left_id=comparison.candidate_a_id,
        right_id=comparison.candidate_b_id,
        status=AssignmentStatus.SUBMITTED,
        created_at=now,
        expires_at=now,
        closed_at=now,
        guideline_version=judge.project.guideline_version,
    )
    return Judgment.objects.create(
        comparison=comparison,
        batch_id=comparison.batch_id,
        annotator=judge.account,
        assignment=assignment,
        choice=choice,
        source=Source.AI,
        counts_toward_overlap=False,
        left_id=comparison.candidate_a_id,
        right_id=comparison.candidate_b_id,
        chosen_id={"a": comparison.candidate_a_id, "b": comparison.candidate_b_id}.get(option),
        strength=stored["strength"],
        criteria=stored["criteria"],
        guideline_version=judge.project.guideline_version,
        gold_correct=_gold_correct(comparison, option),
        created_at=now,
    )


def ai_judgment_submit(
    *, judge: Judge, lease: Assignment, stored: dict[str, Any], now: datetime
) -> Judgment:
    """A judge's vote that counts toward the overlap: submitted on its lease through the queue,
    as a person's is, and marked "ai" in the same transaction."""
    left_is_a = lease.left_id == lease.comparison.candidate_a_id
    overall = on_screen(stored, left_is_a=left_is_a)
    criteria: dict[str, Any] = {}
    for name, pick in stored["criteria"].items():
        shown = on_screen(pick, left_is_a=left_is_a)
        # A graded pick is its strength, unless it is "both bad"; a pairwise one its choice.
        criteria[name] = shown["strength"] if shown["strength"] is not None else shown["choice"]
    graded = overall["strength"] is not None
    with transaction.atomic():
        result = judgment_submit(
            assignment_id=lease.pk,
            annotator=judge.account,
            choice=None if graded else overall["choice"],
            strength=overall["strength"],
            criteria=criteria or None,
            now=now,
        )
        Judgment.objects.filter(pk=result.judgment.pk).update(source=Source.AI)
    return result.judgment


# Comparison.rank orders work within each level of the project's policy (a random key). A judge
# moves a comparison it was unsure of to the front of its level, and one it was sure of to the
# back, each still at random among its kind: people's votes go first where the AI is unsure.
FRONT = 2**20
BACK = 2**30


def _unsure(outcome: dict[str, Any] | None, consistent: bool | None) -> bool:
    if outcome is None or not consistent:
        return True
    if outcome["option"] in ("tie", INCONSISTENT):
        return True
    strength = outcome.get("strength")
    return strength is not None and abs(strength) <= 1


def _reorder(comparison: Comparison, *, unsure: bool) -> None:
    rank = secrets.randbelow(FRONT) if unsure else BACK + secrets.randbelow(2**31 - BACK)
    Comparison.objects.filter(pk=comparison.pk, complete=False).update(rank=rank)


@dataclass
class _Tally:
    done: int = 0
    failed: int = 0
    inconsistent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))


class _Run:
    def __init__(self, job: JudgeJob, attempt: int) -> None:
        self.job = job
        self.judge = job.judge
        self.attempt = attempt
        self.spec = spec_for(self.judge.project)
        self.template = judge_template(self.judge, self.spec)
        self.tally = _Tally()
        self.superseded = False
        self.stop_reason = ""
        self.last_beat = time.monotonic()
        self.client: EndpointClient | None = None

    def run(self) -> None:
        try:
            self.client = EndpointClient(endpoint_config(self.judge.endpoint))
        except BadRequest as error:
            self._end(JudgeJobStatus.STOPPED, str(error))
            return
        try:
            self._run()
        finally:
            self.client.close()

    def _stopping(self) -> bool:
        return self.superseded or bool(self.stop_reason)

    def _run(self) -> None:
        # Each thread asks both orders in turn: as many threads as requests may be in flight.
        width = min(MAX_THREADS, self.judge.endpoint.max_concurrency)
        pending: dict[Future[Reading], Comparison] = {}
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="judge") as pool:
            for comparison in self._comparisons():
                while len(pending) >= width * 2 and not self._stopping():
                    self._collect(pending, block=True)
                if self._stopping():
                    break
                assert self.client is not None
                future = pool.submit(
                    judge_pair,
                    self.client,
                    self.judge,
                    self.spec,
                    self.template,
                    comparison.pk,
                    comparison.prompt.content,
                    comparison.candidate_a.text,
                    comparison.candidate_b.text,
                )
                pending[future] = comparison
            if self._stopping():
                for future in pending:
                    future.cancel()
            while pending:
                self._collect(pending, block=True)
        self._beat()
        _recount(self.job)
        if self.superseded:
            logger.info("judging job %s attempt %s superseded", self.job.pk, self.attempt)
            return
        if self.stop_reason:
            self._end(JudgeJobStatus.STOPPED, self.stop_reason)
            return
        failed = Verdict.objects.filter(judge=self.judge, comparison__batch=self.job.batch).exclude(
            failure=""
        )
        count = failed.count()
        self._end(
            JudgeJobStatus.DONE,
            f"{count} comparison(s) failed; resume to try them again" if count else "",
        )

    def _comparisons(self) -> Iterator[Comparison]:
        """The batch's comparisons the judge has no verdict on (a failed one is tried again),
        in id order; through the queue when the judge counts toward the overlap."""
        if self.judge.counts_toward_overlap:
            yield from self._leased()
            return
        last = 0
        judged = Verdict.objects.filter(judge=self.judge, failure="").values("comparison_id")
        base = (
            Comparison.objects.filter(batch=self.job.batch, candidate_ids__isnull=True)
            .exclude(pk__in=judged)
            .select_related("prompt", "candidate_a", "candidate_b")
            .order_by("pk")
        )
        while not self._stopping():
            chunk = list(base.filter(pk__gt=last)[:CHUNK])
            if not chunk:
                return
            last = chunk[-1].pk
            yield from chunk

    def _leased(self) -> Iterator[Comparison]:
        """Leases through the queue, preferring the batch's comparisons in id order; what the
        queue gives instead is judged all the same (it is work the project wants)."""
        self.leases: dict[int, Assignment] = {}
        judged = Verdict.objects.filter(judge=self.judge, failure="").values("comparison_id")
        candidates = iter(
            Comparison.objects.filter(batch=self.job.batch, candidate_ids__isnull=True)
            .exclude(pk__in=judged)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        while not self._stopping():
            wanted = next(candidates, None)
            lease = assignment_next(
                project=self.judge.project,
                annotator=self.judge.account,
                prefer=Preference(wanted, False) if wanted is not None else None,
            )
            if lease is None:
                return
            comparison = Comparison.objects.select_related(
                "prompt", "candidate_a", "candidate_b"
            ).get(pk=lease.comparison_id)
            self.leases[comparison.pk] = lease
            yield comparison
            if wanted is None and comparison.batch_id != self.job.batch_id:
                return  # the batch is done; the rest of the queue is not this job's

    def _collect(self, pending: dict[Future[Reading], Comparison], *, block: bool) -> None:
        if block:
            done, _ = wait(pending, timeout=BEAT_SECONDS, return_when=FIRST_COMPLETED)
        else:
            done = {f for f in pending if f.done()}
        for future in done:
            comparison = pending.pop(future)
            if future.cancelled():
                continue
            try:
                reading = future.result()
            except Exception as error:  # a bug or an odd answer: recorded, not fatal
                logger.exception("judging job %s: comparison %s", self.job.pk, comparison.pk)
                reading = Reading(comparison.pk, failure="error", detail=type(error).__name__)
            if reading.failure == "circuit_open":
                self.stop_reason = (
                    f"{self.judge.endpoint.name} kept failing, so the job stopped (its circuit "
                    "opened); resume it when the endpoint is back"
                )
                continue
            self._record(comparison, reading)
        if time.monotonic() - self.last_beat >= BEAT_SECONDS:
            self._beat()

    def _record(self, comparison: Comparison, reading: Reading) -> None:
        judge = self.judge
        values: dict[str, Any] = {
            "template_version": judge.template_version,
            # A reply asked again (unparsable the first time) follows the first, after a rule.
            "raw_first": "\n\n---\n\n".join(reading.raw[0]),
            "raw_second": "\n\n---\n\n".join(reading.raw[1]),
            "first": _verdict_json(reading.parsed[0]) if len(reading.parsed) > 0 else None,
            "second": _verdict_json(reading.parsed[1]) if len(reading.parsed) > 1 else None,
            "failure": reading.failure,
            "detail": reading.detail,
            "prompt_tokens": reading.prompt_tokens,
            "completion_tokens": reading.completion_tokens,
            "cost": reading.cost,
        }
        self.tally.prompt_tokens += reading.prompt_tokens
        self.tally.completion_tokens += reading.completion_tokens
        self.tally.cost += reading.cost or 0
        now = timezone.now()
        try:
            with transaction.atomic():
                if reading.failure:
                    values.update(outcome=None, consistent=None, judgment=None)
                    self.tally.failed += 1
                else:
                    policy: Policy = "tie" if judge.disagreement == "tie" else "inconsistent"
                    combined = combine(reading.parsed[0], reading.parsed[1], policy=policy)
                    stored = _stored(combined)
                    values.update(outcome=stored, consistent=combined.consistent)
                    judgment = None
                    if stored["option"] != INCONSISTENT and not any(
                        c["option"] == INCONSISTENT for c in stored["criteria"].values()
                    ):
                        if judge.counts_toward_overlap:
                            lease = self.leases.pop(comparison.pk)
                            judgment = ai_judgment_submit(
                                judge=judge, lease=lease, stored=stored, now=now
                            )
                        else:
                            judgment = ai_judgment_record(
                                judge=judge, comparison=comparison, stored=stored, now=now
                            )
                    else:
                        self.tally.inconsistent += 1
                    values["judgment"] = judgment
                    self.tally.done += 1
                Verdict.objects.update_or_create(
                    judge=judge, comparison=comparison, defaults=values
                )
                if judge.people_first_where_unsure and not reading.failure:
                    _reorder(comparison, unsure=_unsure(values["outcome"], values["consistent"]))
        except IntegrityError:
            # Another run judged it meanwhile (its judgment is the one that stands).
            logger.info("judging job %s: comparison %s judged already", self.job.pk, comparison.pk)
        except Exception:
            logger.exception("judging job %s: recording comparison %s", self.job.pk, comparison.pk)
            Verdict.objects.update_or_create(
                judge=judge,
                comparison=comparison,
                defaults={**values, "failure": "not_recorded", "judgment": None},
            )
            self.tally.failed += 1

    def _beat(self) -> None:
        self.last_beat = time.monotonic()
        tally, self.tally = self.tally, _Tally()
        held = _held(self.job.pk, self.attempt).update(
            heartbeat_at=timezone.now(),
            comparisons_done=F("comparisons_done") + tally.done,
            comparisons_failed=F("comparisons_failed") + tally.failed,
            inconsistent=F("inconsistent") + tally.inconsistent,
            prompt_tokens=F("prompt_tokens") + tally.prompt_tokens,
            completion_tokens=F("completion_tokens") + tally.completion_tokens,
            cost=F("cost") + tally.cost,
        )
        if not held:
            self.superseded = True

    def _end(self, status: str, note: str) -> None:
        with transaction.atomic():
            if not _held(self.job.pk, self.attempt).update(
                status=status, note=note[:500], finished_at=timezone.now()
            ):
                return
            job = JudgeJob.objects.get(pk=self.job.pk)
            audit_record(
                actor=job.created_by,
                action=AuditAction.JUDGING_ENDED,
                project=self.judge.project,
                target=job,
                details={"status": status, "note": note, **_progress(job)},
            )
