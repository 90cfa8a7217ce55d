from typing import Any

from celery import shared_task

from apps.dashboard.services import (
    dashboards_refresh,
    figures_cached,
    figures_refresh,
    just_computed,
)
from apps.projects.models import Project


@shared_task(name="apps.dashboard.tasks.dashboards_refresh_task")
def dashboards_refresh_task() -> dict[str, Any]:
    """The beat job: recomputes the dashboard figures of every active project into the cache."""
    return dashboards_refresh()


@shared_task(name="apps.dashboard.tasks.dashboard_refresh_project_task")
def dashboard_refresh_project_task(project_id: int) -> bool:
    """New figures for one project (a page found them stale or missing).

    False if another is computing them, or if they were computed moments ago (this task waited
    in the queue behind a run that did the work).
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or just_computed(figures_cached(project_id)):
        return False
    return figures_refresh(project) is not None
