import functools
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F
from django.utils import timezone

from annotate.rows import columns
from apps.batches.models import BatchStatus, Comparison
from apps.batches.queue_order import complete_condition, open_ordinary_sql, takes_votes_sql
from apps.judging.models import Assignment, Judgment, Source
from apps.judging.queue.sql_pick import ACTIVE_BATCHES, NOT_MINE
from apps.projects.models import Membership, Project
from apps.projects.selectors import membership_from_row, projects_led_by


@dataclass(frozen=True)
class ProjectProgress:
    """A project on the home page: the project's figure and the user's own."""

    project: Project
    role: str
    comparisons: int  # ordinary ones in the project's active, paused and finished batches
    complete: int  # of those, the ones with all their votes (the project's overlap)
    mine: int  # judgments by this user in the project
    left: int  # what is left for this user now, at most LEFT_COUNT_LIMIT + 1 (see left_for)
    blocked: str = ""  # why this user gets no more work here (a cap, the gold rule), or ""

    @property
    def percent_complete(self) -> int:
        return round(100 * self.complete / self.comparisons) if self.comparisons else 0

    @property
    def left_label(self) -> str:
        return f"{LEFT_COUNT_LIMIT:,}+" if self.left > LEFT_COUNT_LIMIT else f"{self.left:,}"

    @property
    def action(self) -> str:
        """ "Start judging", "Continue judging", or "" when nothing is left for them."""
        if self.blocked or not self.left:
            return ""
        return "Continue judging" if self.mine else "Start judging"


def _project_totals(ids: list[int]) -> dict[int, dict[str, int]]:
    """{project id: {"total", "complete"}}: ordinary comparisons of batches that were
    imported, and those that are complete (queue_order's rule: all the votes the project's
    overlap asks for). Gold items test annotators and are never complete: they are left out of
    both, as on the dashboard, so that a project whose comparisons all have their votes shows
    100% whatever its gold items."""
    return {
        row["project_id"]: {"total": row["total"], "complete": row["complete"]}
        for row in Comparison.objects.filter(
            project_id__in=ids,
            is_gold=False,
            batch__status__in=[BatchStatus.ACTIVE, BatchStatus.PAUSED, BatchStatus.DONE],
        )
        .values("project_id")
        .annotate(
            total=Count("id"),
            complete=Count(
                "id",
                filter=complete_condition(
                    overlap=F("project__overlap"), margin=F("project__stop_margin")
                ),
            ),
        )
    }


# What is left for an annotator: the comparisons of the project's active batches (but those where
# they reached the batch's cap) that the queue may still give them (sql_pick's rule: open, a slot
# free under the overlap, not judged or skipped by them, no open lease of theirs), and the ones
# they hold an open lease on (the comparison on their screen). Written with the pick's own
# fragments, so that "left" is never above 0 where the queue has nothing for them: a comparison
# whose free slots are all under other annotators' leases is not left for them.
_LEFT_SQL = f"""SELECT count(*) FROM (
    SELECT 1 FROM batches_comparison c
    WHERE c.batch_id IN ({ACTIVE_BATCHES})
      AND ({takes_votes_sql(overlap="%(overlap)s", alias="c")} AND {NOT_MINE}
           OR {open_ordinary_sql("c")} AND EXISTS (
                SELECT 1 FROM judging_assignment a
                WHERE a.comparison_id = c.id AND a.annotator_id = %(annotator)s
                  AND a.status = 'open'))
    LIMIT %(limit)s) AS t"""  # noqa: S608 (constant fragments only)


def _left_count(*, annotator: User, project: Project) -> int:
    """_LEFT_SQL's count, at most LEFT_COUNT_LIMIT + 1, in one query."""
    params = {
        "project": project.pk,
        "annotator": annotator.pk,
        "overlap": project.overlap,
        "limit": LEFT_COUNT_LIMIT + 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LEFT_SQL, params)
        row = cursor.fetchone()
    return int(row[0])


def left_for(*, annotator: User, project: Project, judged: int) -> int:
    """What is left for the annotator in the project, counted now (never cached): _LEFT_SQL's
    count, at most LEFT_COUNT_LIMIT + 1, and no more than the project's cap leaves them."""
    left = _left_count(annotator=annotator, project=project)
    if project.annotator_cap is not None:
        left = min(left, max(project.annotator_cap - judged, 0))
    return left


def progress_for_annotator(*, annotator: User) -> list[ProjectProgress]:
    """Each project the user belongs to, with the project's progress and the user's own: how
    many they judged, what is left for them (counted at each call) and whether they are
    stopped. One query for the projects, two for the counts, and one per project for "left"."""
    memberships = list(
        Membership.objects.filter(user=annotator)
        .select_related("project")
        .order_by("project__name", "project_id")
    )
    ids = [m.project_id for m in memberships]
    totals = _project_totals(ids)
    mine = dict(
        Judgment.objects.filter(
            annotator=annotator, comparison__project_id__in=ids, source=Source.HUMAN
        )
        .values("comparison__project_id")
        .annotate(n=Count("id"))
        .values_list("comparison__project_id", "n")
    )
    progress = []
    for membership in memberships:
        project = membership.project
        judged = mine.get(project.pk, 0)
        progress.append(
            ProjectProgress(
                project=project,
                role=membership.role,
                comparisons=totals.get(project.pk, {}).get("total", 0),
                complete=totals.get(project.pk, {}).get("complete", 0),
                mine=judged,
                left=left_for(annotator=annotator, project=project, judged=judged),
                blocked=membership.blocked_reason(project),
            )
        )
    return progress


@dataclass(frozen=True)
class LedProject:
    """A project on a lead's (or staff member's) home page, with its overall progress."""

    project: Project
    comparisons: int
    complete: int

    @property
    def percent_complete(self) -> int:
        return round(100 * self.complete / self.comparisons) if self.comparisons else 0


def projects_to_manage(*, user: User) -> list[LedProject]:
    """The projects the user leads (every project for staff), by name, with their progress."""
    projects = list(projects_led_by(user).order_by("name", "pk"))
    totals = _project_totals([p.pk for p in projects])
    return [
        LedProject(
            project=p,
            comparisons=totals.get(p.pk, {}).get("total", 0),
            complete=totals.get(p.pk, {}).get("complete", 0),
        )
        for p in projects
    ]


# Counting what is left for an annotator stops here: above it the page says "10,000+".
LEFT_COUNT_LIMIT = 10_000
LEFT_CACHE_SECONDS = 30


@dataclass(frozen=True)
class AnnotatorProgress:
    today: int
    total: int
    left: int  # open comparisons they may still judge, at most LEFT_COUNT_LIMIT + 1
    cap_left: int | None  # judgments left under the project's cap, if it has one

    @property
    def left_label(self) -> str:
        left = self.left if self.cap_left is None else min(self.left, self.cap_left)
        return f"{LEFT_COUNT_LIMIT:,}+" if left > LEFT_COUNT_LIMIT else f"{left:,}"


def progress_in_project(*, annotator: User, project: Project) -> AnnotatorProgress:
    """The annotator's progress for the judging page: judged today (since local midnight) and
    in all, and how much is left for them.

    "Left" counts what the queue may still give them (_LEFT_SQL), up to LEFT_COUNT_LIMIT (so
    the cost is bounded at any size), and is cached for LEFT_CACHE_SECONDS per annotator: it
    moves with everyone's work, not only theirs. The cache key holds the member's own judgment
    and skip counts (read anyway, in the same query), so their own judgment, skip or undo is
    counted at once, with no cache write in the services.
    """
    total, skips = (
        Membership.objects.filter(project=project, user=annotator)
        .values_list("judgment_count", "skip_count")
        .first()
    ) or (0, 0)
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Judgment.objects.filter(
        annotator=annotator, created_at__gte=midnight, batch__project=project, source=Source.HUMAN
    ).count()
    key = f"progress-left:{project.pk}:{annotator.pk}:{total}:{skips}"
    left = cache.get(key)
    if left is None:
        left = _left_count(annotator=annotator, project=project)
        cache.set(key, left, LEFT_CACHE_SECONDS)
    cap_left = None if project.annotator_cap is None else max(project.annotator_cap - total, 0)
    return AnnotatorProgress(today=today, total=total, left=left, cap_left=cap_left)


def membership_for_assignment(*, user: User, assignment_id: int) -> Membership | None:
    """The user's membership, with its project, in the project of one of their assignments, in
    one query; None when the assignment is not theirs or they are no longer a member.

    A submit or skip that asks for the next assignment (`?next=1`) knows the assignment, not
    the project's slug; this stands for membership_for there, read after the judgment has
    committed, so that its counters (caps, gold answers) include it.
    """
    with connection.cursor() as cursor:
        cursor.execute(_membership_of_assignment_sql(), [assignment_id, user.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    return membership_from_row(row)


@functools.cache
def _membership_of_assignment_sql() -> str:
    quote = connection.ops.quote_name
    # Only names from the models are formatted in; the values are bound.
    return (
        f"SELECT {', '.join(columns(Membership, 'm') + columns(Project, 'p'))} "  # noqa: S608
        f"FROM {quote(Assignment._meta.db_table)} a "
        f"JOIN {quote(Membership._meta.db_table)} m "
        "ON m.project_id = a.project_id AND m.user_id = a.annotator_id "
        f"JOIN {quote(Project._meta.db_table)} p ON p.id = m.project_id "
        "WHERE a.id = %s AND a.annotator_id = %s"
    )
