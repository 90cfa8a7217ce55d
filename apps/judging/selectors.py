from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import Count, F, Q

from apps.batches.models import BatchStatus, Comparison
from apps.judging.models import Judgment
from apps.projects.models import Project


@dataclass(frozen=True)
class ProjectProgress:
    project: Project
    role: str
    comparisons: int
    complete: int
    mine: int

    @property
    def percent_complete(self) -> int:
        return round(100 * self.complete / self.comparisons) if self.comparisons else 0


def progress_for_annotator(*, annotator: User) -> list[ProjectProgress]:
    """Each project the user belongs to, with overall progress and their own judgment count."""
    projects = list(
        Project.objects.filter(memberships__user=annotator)
        .annotate(role=F("memberships__role"))
        .order_by("name")
    )
    ids = [p.pk for p in projects]
    totals: dict[int, dict[str, int]] = {
        row["project_id"]: {"total": row["total"], "complete": row["complete"]}
        for row in Comparison.objects.filter(
            project_id__in=ids,
            batch__status__in=[BatchStatus.ACTIVE, BatchStatus.PAUSED, BatchStatus.DONE],
        )
        .values("project_id")
        .annotate(
            total=Count("id"),
            complete=Count("id", filter=Q(judgment_count__gte=F("project__overlap"))),
        )
    }
    mine = dict(
        Judgment.objects.filter(annotator=annotator, comparison__project_id__in=ids)
        .values("comparison__project_id")
        .annotate(n=Count("id"))
        .values_list("comparison__project_id", "n")
    )
    return [
        ProjectProgress(
            project=p,
            role=p.role,
            comparisons=totals.get(p.pk, {}).get("total", 0),
            complete=totals.get(p.pk, {}).get("complete", 0),
            mine=mine.get(p.pk, 0),
        )
        for p in projects
    ]


def judgment_count_for(*, annotator: User, project: Project) -> int:
    return Judgment.objects.filter(annotator=annotator, comparison__project=project).count()
