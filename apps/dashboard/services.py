"""The dashboard's figures in the cache: kept fresh by the beat job, read by the page.

The page never computes figures while they are in the cache, however old. On a cold cache (the
project's first view, or after the entry expired or Redis was flushed) a request computes them
itself, holding a lock, only for a small project (at most DASHBOARD_INLINE_MAX_JUDGMENTS
judgments); for a larger one it asks the worker and the page shows that they are being computed,
polling until they arrive. A request that finds the lock held (another request or the worker is
computing) shows the same, rather than waiting. Stale figures (the beat job not running) are
refreshed by a task, again under the lock.

Where tasks run in-process (Celery eager, no broker: `make run`) there is no worker and no beat
to keep the figures fresh: each view computes them (under the same lock), so that they follow
every change (a judgment, an undo, an invalidation), and the page never asks about a beat.
"""

import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone

from annotate.broker import BrokerUnavailable, send_task
from annotate.cache import cache_down
from annotate.celery import app as celery_app
from apps.agreement.pair_doubt import pair_doubt_update
from apps.batches.models import BatchStatus
from apps.dashboard.figures import project_figures
from apps.dashboard.render import figures_html
from apps.projects.models import Membership, Project

logger = logging.getLogger(__name__)

# 2: the figures gained `ai_judges`.
CACHE_VERSION = 2
# How long an entry lives without a refresh; the beat job refreshes active projects far sooner.
# Long: old figures, shown with their age while a task computes new ones, beat a request that
# computes them itself (minutes for a project of a million judgments).
FIGURES_TTL_SECONDS = 7 * 24 * 60 * 60
# A computation holds the lock at most this long (then another may start).
LOCK_TTL_SECONDS = 10 * 60
# A project viewed in the last this many seconds is refreshed by the beat job, active or not.
WATCH_TTL_SECONDS = 15 * 60
# While the figures are being computed, the open page asks for them this often (at most).
COMPUTING_POLL_SECONDS = 3


# Waiting this long for a worker to start on the figures, the page asks whether one is running.
WORKER_LATE_SECONDS = 60


@dataclass(frozen=True)
class Computing:
    """What the page shows on a cold cache while the figures are computed elsewhere."""

    judgments: int  # the estimate (judgments_estimate), for "about N judgments"
    # Seconds since a computation started (the lock is held), or None when none runs.
    running_for: float | None = field(default=None, compare=False)
    # Seconds since the worker was first asked, while none has started; None if never asked.
    waiting_for: float | None = field(default=None, compare=False)
    # Redis (the cache and the task queue) cannot be reached: nobody can compute them now.
    unavailable: bool = field(default=False, compare=False)

    @property
    def worker_late(self) -> bool:
        return self.running_for is None and (self.waiting_for or 0) >= WORKER_LATE_SECONDS


def refresh_seconds() -> int:
    """How often the beat job refreshes the figures (the page says so)."""
    return int(getattr(settings, "DASHBOARD_REFRESH_SECONDS", 30))


def poll_seconds() -> int:
    """How often the open page asks for the figures again."""
    return int(getattr(settings, "DASHBOARD_POLL_SECONDS", 30))


def computing_poll_seconds() -> int:
    """How often the page asks while the figures are being computed: sooner than usual."""
    return min(COMPUTING_POLL_SECONDS, poll_seconds())


def inline_max_judgments() -> int:
    """The largest project (in judgments) whose figures a request computes on a cold cache."""
    return int(getattr(settings, "DASHBOARD_INLINE_MAX_JUDGMENTS", 20_000))


def judgments_estimate(project: Project) -> int:
    """About how many judgments the project holds: the sum of its members' judgment counts.

    One indexed read of the project's memberships (a row per member, whatever the number of
    judgments), where counting the judgments themselves reads every one of them. The members'
    counts keep invalidated judgments (the aggregation reads those rows too) and miss only the
    judgments of someone no longer a member.
    """
    total = Membership.objects.filter(project=project).aggregate(n=Sum("judgment_count"))["n"]
    return int(total or 0)


def _key(project_id: int) -> str:
    return f"dashboard:v{CACHE_VERSION}:figures:{project_id}"


def _lock_key(project_id: int) -> str:
    return f"dashboard:v{CACHE_VERSION}:lock:{project_id}"


def _asked_key(project_id: int) -> str:
    return f"dashboard:v{CACHE_VERSION}:asked:{project_id}"


def _waiting_key(project_id: int) -> str:
    return f"dashboard:v{CACHE_VERSION}:waiting:{project_id}"


def _watch_key(project_id: int) -> str:
    return f"dashboard:v{CACHE_VERSION}:watched:{project_id}"


def figures_cached(project_id: int) -> dict[str, Any] | None:
    figures: dict[str, Any] | None = cache.get(_key(project_id))
    return figures


def figures_refresh(project: Project) -> dict[str, Any] | None:
    """Computes and stores the project's figures, unless another process is computing them.

    Returns the new figures, or None when the lock was taken.
    """
    # The lock's value says when the computation started (for the page's "started n s ago").
    token = f"{secrets.token_hex(8)}@{time.time():.3f}"
    if not cache.add(_lock_key(project.pk), token, LOCK_TTL_SECONDS):
        return None
    try:
        figures = project_figures(project)
        figures["pair_doubt"] = _pair_doubt(project, figures)
        figures["html"] = figures_html(figures)
        cache.set(_key(project.pk), figures, FIGURES_TTL_SECONDS)
        cache.delete(_waiting_key(project.pk))
        return figures
    finally:
        if cache.get(_lock_key(project.pk)) == token:
            cache.delete(_lock_key(project.pk))


def _pair_doubt(project: Project, figures: dict[str, Any]) -> dict[str, Any] | None:
    """The uncertain_first queue's model-pair levels (agreement.pair_doubt) from the figures'
    crowd leaderboard, written onto the comparisons; None for another policy. A database error
    is logged, not raised: the queue keeps the levels it had, and the figures stand."""
    try:
        update = pair_doubt_update(project, figures["models"]["crowd_leaderboard"]["models"])
    except DatabaseError:
        logger.exception("model-pair doubt of project %s not written", project.slug)
        return None
    return None if update is None else {"pairs": update.bands, "changed": update.changed}


def tasks_in_process() -> bool:
    """Tasks run inside the request (Celery eager, no broker): no worker, no beat job."""
    return bool(celery_app.conf.task_always_eager)


def figures_for_page(project: Project) -> dict[str, Any] | Computing:
    """The figures the page shows, from the cache; never a large project's computed in the request.

    On a cold cache, a project of at most inline_max_judgments() judgments has its figures
    computed here (about a second per 10,000 judgments); a larger one has them computed by the
    worker, and this returns Computing at once. So does finding the lock held: another request
    or the worker is computing them, and the page asks again shortly rather than wait here.
    With tasks in-process (Celery eager, no broker), they are computed here on every view.
    """
    cache.set(_watch_key(project.pk), True, WATCH_TTL_SECONDS)
    if tasks_in_process():
        # No beat refreshes them: computed for this view, so that they follow every change.
        # Another request computing them (the lock held) is not waited for: its last figures.
        figures = figures_refresh(project) or figures_cached(project.pk)
        if figures is not None:
            return figures
        return _computing(project, judgments_estimate(project))
    figures = figures_cached(project.pk)
    if figures is not None:
        if age_seconds(figures) > 3 * refresh_seconds():
            _refresh_later(project)
        return figures
    judgments = judgments_estimate(project)
    if judgments <= inline_max_judgments():
        # Also while Redis is down: computed for this view, then not kept (annotate/cache.py).
        figures = figures_refresh(project)
    elif cache_down():
        # Not in the request, and no worker can be asked: the page says so and asks again.
        return Computing(judgments=judgments, unavailable=True)
    else:
        _refresh_later(project)
        figures = figures_cached(project.pk)  # there already when the task ran eagerly
    if figures is not None:
        return figures
    return _computing(project, judgments)


def _computing(project: Project, judgments: int) -> Computing:
    """How far the figures are: being computed (since when), or waiting for a worker."""
    now = time.time()
    running_for = waiting_for = None
    lock = cache.get(_lock_key(project.pk))
    if lock is not None:
        started = str(lock).rpartition("@")[2]
        try:
            running_for = max(0.0, now - float(started))
        except ValueError:  # a lock of an older version: running, since unknown
            running_for = 0.0
    else:
        # The first time a page found them missing with nobody computing them.
        cache.add(_waiting_key(project.pk), now, LOCK_TTL_SECONDS)
        asked = cache.get(_waiting_key(project.pk))
        waiting_for = max(0.0, now - float(asked)) if asked is not None else 0.0
    return Computing(judgments=judgments, running_for=running_for, waiting_for=waiting_for)


def _refresh_later(project: Project) -> None:
    """Asks the worker for new figures, at most once at a time (the lock is checked there)."""
    # One request per refresh period asks; the others keep showing what is cached.
    if cache.get(_lock_key(project.pk)) is None and cache.add(
        _asked_key(project.pk), True, refresh_seconds()
    ):
        # Not sent while the broker is down (logged): the page shows what it has, and a later
        # view asks again.
        with contextlib.suppress(BrokerUnavailable):
            send_task("apps.dashboard.tasks.dashboard_refresh_project_task", project.pk)


def active_projects() -> list[Project]:
    """Projects the beat job refreshes: with an active batch, or viewed recently."""
    projects = list(Project.objects.all())
    watched = cache.get_many([_watch_key(p.pk) for p in projects])
    with_active = set(
        Project.objects.filter(batches__status=BatchStatus.ACTIVE).values_list("pk", flat=True)
    )
    return [p for p in projects if p.pk in with_active or _watch_key(p.pk) in watched]


def dashboards_refresh() -> dict[str, Any]:
    """The beat job: new figures for every active project. Returns what it did, for the log."""
    done, skipped = [], []
    for project in active_projects():
        if just_computed(figures_cached(project.pk)):
            # Computed moments ago (a page's cold start, or a run that queued behind a long one).
            skipped.append(project.slug)
            continue
        started = time.perf_counter()
        try:
            figures = figures_refresh(project)
        except Exception:
            logger.exception("dashboard figures of project %s failed", project.slug)
            skipped.append(project.slug)
            continue
        if figures is None:
            skipped.append(project.slug)
        else:
            done.append((project.slug, round(time.perf_counter() - started, 3)))
    return {"refreshed": done, "skipped": skipped}


def just_computed(figures: dict[str, Any] | None) -> bool:
    """Figures younger than half the refresh period: computing them again would waste a run."""
    return figures is not None and age_seconds(figures) < refresh_seconds() / 2


def age_seconds(figures: dict[str, Any], now: datetime | None = None) -> float:
    now = now or timezone.now()
    return max(0.0, now.timestamp() - float(figures["computed_at"]))


def freshness(
    figures: dict[str, Any], *, now: datetime | None = None, in_process: bool = False
) -> str:
    """ "figures from 23 s ago, refreshed every 30 s" (and a warning when the job is late).

    With tasks in-process (`in_process`) no beat job runs: the figures are computed on each view,
    the text says so, and never asks whether the beat runs.
    """
    age = age_seconds(figures, now)
    if in_process:
        return (
            f"figures from {_duration(age)} ago, computed on each view "
            "(tasks run in-process, no beat job)"
        )
    every = refresh_seconds()
    text = f"figures from {_duration(age)} ago, refreshed every {_duration(every)}"
    if age > 3 * every:
        text += " (late: is the Celery beat running?)"
    return text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"
