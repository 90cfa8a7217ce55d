"""A change of a project's assignment policy, applied to its comparisons.

Every comparison carries its project's policy (Comparison.policy), which decides which of the
queue's partial indexes holds it (queue_order.index_condition). When a lead changes the policy,
`Project.save` counts one more `policy_version` and calls `comparison_policy_follow_after_change`
in the change's transaction:

- a project of up to POLICY_FOLLOW_INLINE comparisons has them updated there and then, in that
  transaction (a few milliseconds): nothing is ever seen half done;
- a larger one is updated after the change commits, by a task (`policy_follow_task`), in
  chunks of POLICY_FOLLOW_CHUNK ids, each in a transaction of its own. One transaction for a
  million rows took 35-42 s and held every updated row's lock until it ended, so a submit on any
  of them waited that long; a chunk holds its rows for a fraction of a second.

Until a chunk is done its rows carry the old policy. The queue still serves them: every policy's
pick also reads breadth first's index, which holds every open row, and its exact probe falls back
to breadth first's (apps.judging.queue.sql_pick), so "nothing left" is never said of open rows;
they only come in breadth-first order meanwhile.

Each chunk reads the policy with the project's row held FOR SHARE (comparison_policy), and writes
that one: a newer change, which takes the row FOR NO KEY UPDATE, waits for the chunk to commit,
and its own follow, sent when it commits, sees every row the older one wrote. The follow marks
the version it applied in `policy_followed` (only if no newer change came meanwhile);
`policy_follows_sweep`, a beat job, sends it again for a change left unfollowed for longer than
POLICY_FOLLOW_STALE_AFTER seconds (a message lost, the broker gone, a worker that died): the
follow is idempotent, so a duplicate costs time, never correctness.
"""

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from annotate.broker import BrokerUnavailable, send_task
from apps.batches.models import Comparison, comparison_policy
from apps.projects.models import Project

logger = logging.getLogger(__name__)

# Sent by name (annotate.broker.send_task): the tasks module imports this one.
FOLLOW_TASK = "apps.batches.tasks.policy_follow_task"

# While a follow runs, how far it is, in the cache (shared by the worker and the web processes):
# [ids covered, ids in the project's range]. Written after each chunk commits, deleted at the
# end; without Redis the dashboard says only that the change is being applied.
PROGRESS_KEY = "policy-follow:{}"


def comparison_policy_follow_after_change(
    *, project_id: int, using: str = DEFAULT_DB_ALIAS
) -> None:
    """In the transaction of a change of the project's policy (Project.save, which holds the
    project's row): updates a small project's comparisons now; for a larger one, sends the
    follow when the change commits."""
    limit = settings.POLICY_FOLLOW_INLINE
    rows = Comparison.objects.using(using).filter(project_id=project_id)
    if rows[: limit + 1].count() <= limit:
        policy, version = (
            Project.objects.using(using)
            .filter(pk=project_id)
            .values_list("policy", "policy_version")
            .get()
        )
        rows.exclude(policy=policy).update(policy=policy)
        Project.objects.using(using).filter(pk=project_id).update(policy_followed=version)
        return
    transaction.on_commit(functools.partial(_send, project_id), using=using)


def _send(project_id: int) -> None:
    try:
        send_task(FOLLOW_TASK, project_id)
    except BrokerUnavailable:
        # The change is committed; its follow is the sweep's to send once the broker is back.
        logger.warning(
            "policy follow of project %s not sent (broker unreachable): the sweep sends it",
            project_id,
        )


def comparison_policy_follow(
    *,
    project_id: int,
    chunk: int | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> int:
    """Gives every comparison of the project the project's current policy, POLICY_FOLLOW_CHUNK
    ids (or `chunk`) at a time, each chunk in a transaction of its own; returns how many rows it
    changed. `after_chunk`, if given, is called with the first id past each chunk once it has
    committed. Marks the version it applied as followed, unless a newer change came meanwhile
    (whose own follow then does it)."""
    size = chunk or settings.POLICY_FOLLOW_CHUNK
    version = Project.objects.filter(pk=project_id).values_list("policy_version", flat=True).first()
    if version is None:  # deleted meanwhile
        return 0
    # Rows added after this are written with the new policy (imports read it and hold the
    # project's row at their end; generation reads it holding the row).
    bounds = Comparison.objects.filter(project_id=project_id).aggregate(lo=Min("pk"), hi=Max("pk"))
    changed = 0
    key = PROGRESS_KEY.format(project_id)
    if bounds["lo"] is not None:
        lo, hi = bounds["lo"], bounds["hi"]
        cache.set(key, [0, hi - lo + 1], PROGRESS_TIMEOUT)
        for start in range(lo, hi + 1, size):
            with transaction.atomic():
                policy = comparison_policy(project_id, hold=True)
                changed += (
                    Comparison.objects.filter(
                        project_id=project_id, pk__gte=start, pk__lt=start + size
                    )
                    .exclude(policy=policy)
                    .update(policy=policy)
                )
            cache.set(key, [min(start + size, hi + 1) - lo, hi - lo + 1], PROGRESS_TIMEOUT)
            if after_chunk is not None:
                after_chunk(start + size)
    Project.objects.filter(
        pk=project_id, policy_version=version, policy_followed__lt=version
    ).update(policy_followed=version)
    cache.delete(key)
    logger.info("policy follow of project %s: %s comparisons changed", project_id, changed)
    return changed


# A follow that died leaves its last figures until the run the sweep sends starts over, or an
# hour passes.
PROGRESS_TIMEOUT = 3600


def policy_follow_state(project: Project, now: datetime | None = None) -> dict[str, Any] | None:
    """Where the last change of the project's policy stands, for the dashboard: None once every
    comparison carries it; otherwise {"policy": its label, "since": when it was made, "percent":
    how far the follow is (None while no worker has started on it), "late": whether it has
    waited longer than POLICY_FOLLOW_STALE_AFTER (the sweep sends it again)}. `project` as
    just read: its policy_version and policy_followed."""
    if project.policy_followed >= project.policy_version:
        return None
    now = now or timezone.now()
    progress = cache.get(PROGRESS_KEY.format(project.pk))
    percent = None
    if progress:
        done, total = progress
        percent = min(99, 100 * done // max(1, total))
    since = project.policy_changed_at
    stale = timedelta(seconds=settings.POLICY_FOLLOW_STALE_AFTER)
    return {
        "policy": project.get_policy_display(),
        "since": since,
        "percent": percent,
        "late": since is not None and now - since > stale,
    }


def policy_follows_sweep(now: datetime | None = None) -> int:
    """The beat job: sends the follow again for every change left unfollowed for longer than
    POLICY_FOLLOW_STALE_AFTER seconds; returns how many it sent."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.POLICY_FOLLOW_STALE_AFTER)
    waiting = list(
        Project.objects.filter(
            policy_followed__lt=F("policy_version"), policy_changed_at__lt=stale
        ).values_list("pk", flat=True)
    )
    for project_id in waiting:
        send_task(FOLLOW_TASK, project_id)
    if waiting:
        logger.info("policy follow sweep: sent again for projects %s", waiting)
    return len(waiting)
