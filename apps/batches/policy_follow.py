"""A change of a project's assignment policy, applied to its comparisons; and a change of its
overlap, stopping or audit sample (queue_settings_changed), whose completion is recomputed the
same way.

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
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from annotate.broker import BrokerUnavailable, send_task
from apps.batches.models import Comparison, comparison_policy
from apps.batches.queue_order import complete_condition
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
) -> int | None:
    """In the transaction of a change of the project's queue settings (Project.save for the
    policy, queue_settings_changed for the overlap and stopping, both holding the project's
    row): updates a small project's comparisons now, and returns how many changed state
    (complete or open); for a larger one, sends the follow when the change commits, and returns
    None."""
    limit = settings.POLICY_FOLLOW_INLINE
    rows = Comparison.objects.using(using).filter(project_id=project_id)
    if rows[: limit + 1].count() <= limit:
        version = (
            Project.objects.using(using)
            .filter(pk=project_id)
            .values_list("policy_version", flat=True)
            .get()
        )
        _, completion = _apply(rows, _queue_settings(project_id, using=using))
        Project.objects.using(using).filter(pk=project_id).update(policy_followed=version)
        return completion
    transaction.on_commit(functools.partial(_send, project_id), using=using)
    return None


def queue_settings_changed(*, project_id: int, using: str = DEFAULT_DB_ALIAS) -> int | None:
    """The project's overlap, its stopping (stop_margin) or its audit sample changed (the
    caller has saved it): counts one more change, holding the project's row, and has the
    comparisons follow it as a change of policy does (comparison_policy_follow_after_change):
    which are complete is recomputed, now for a small project (the number that changed state
    is returned), by the follow task in chunks after the commit for a larger one (None).

    A lower overlap, or stopping turned on or made less demanding, completes comparisons; a
    higher overlap, or stopping turned off or made more demanding, reopens them to the queue.
    Until its chunk is done a row keeps its old state: the pick still never gives it more votes
    than the overlap (it compares the counts with the project's overlap as it is now)."""
    with transaction.atomic(using=using):
        Project.objects.using(using).select_for_update(no_key=True).filter(pk=project_id).update(
            policy_version=F("policy_version") + 1, policy_changed_at=timezone.now()
        )
        return comparison_policy_follow_after_change(project_id=project_id, using=using)


class _Settings(NamedTuple):
    policy: str
    overlap: int
    margin: int


def _queue_settings(
    project_id: int, *, hold: bool = False, using: str = DEFAULT_DB_ALIAS
) -> _Settings:
    """What the project's comparisons follow, read now from `using`. With `hold` (a chunk of
    the follow, on the default database) the project's row is first held FOR SHARE until the
    transaction ends, by comparison_policy, as an import holds it."""
    if hold:
        comparison_policy(project_id, hold=True)
    policy, overlap, margin = (
        Project.objects.using(using)
        .filter(pk=project_id)
        .values_list("policy", "overlap", "stop_margin")
        .get()
    )
    return _Settings(policy, overlap, margin)


def _apply(rows: QuerySet[Comparison], wanted: _Settings) -> tuple[int, int]:
    """Gives `rows` the project's policy and the completion its overlap and stopping decide;
    returns (rows whose policy changed, rows that completed or reopened)."""
    complete = complete_condition(overlap=wanted.overlap, margin=wanted.margin)
    policy = rows.exclude(policy=wanted.policy).update(policy=wanted.policy)
    closed = rows.filter(complete, complete=False).update(complete=True)
    reopened = rows.filter(~complete, complete=True).update(complete=False)
    return policy, closed + reopened


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
                chunk_rows = Comparison.objects.filter(
                    project_id=project_id, pk__gte=start, pk__lt=start + size
                )
                changed += sum(_apply(chunk_rows, _queue_settings(project_id, hold=True)))
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
    """Where the last change of the project's queue settings (its policy, overlap, stopping or
    audit sample) stands, for the dashboard: None once every comparison follows it; otherwise
    {"policy": the policy's label, "overlap", "since": when it was made, "percent":
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
        "overlap": project.overlap,
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
