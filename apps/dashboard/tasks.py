from typing import Any

from celery import shared_task

from apps.dashboard.services import dashboards_refresh, figures_refresh
from apps.projects.models import Project


@shared_task(name="apps.dashboard.tasks.dashboards_refresh_task")
def dashboards_refresh_task() -> dict[str, Any]:
    """The beat job: recomputes the dashboard figures of every active project into the cache."""
    return dashboards_refresh()


@shared_task(name="apps.dashboard.tasks.dashboard_refresh_project_task")
def dashboard_refresh_project_task(project_id: int) -> bool:
    """New figures for one project (a page found them stale); False if another is computing."""
    project = Project.objects.filter(pk=project_id).first()
    return project is not None and figures_refresh(project) is not None
