"""The project dashboard: one page per project for staff and its leads, refreshed by HTMX."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotate.cache import cache_down
from apps.batches.policy_follow import policy_follow_state
from apps.dashboard.services import (
    Computing,
    computing_poll_seconds,
    figures_for_page,
    freshness,
    poll_seconds,
    refresh_seconds,
    tasks_in_process,
)
from apps.judging.views import login_required_htmx
from apps.projects.models import Project
from apps.projects.selectors import project_for_lead


def _context(project: Project, figures: dict[str, Any] | Computing) -> dict[str, Any]:
    context: dict[str, Any] = {
        "project": project,
        "refresh_seconds": refresh_seconds(),
        "cache_down": cache_down(),
        # Live, not from the cached figures: a change of policy being applied right now.
        "policy_follow": policy_follow_state(project),
    }
    if isinstance(figures, Computing):
        # Polled sooner than usual; the answer that brings the figures returns to the usual poll.
        context.update(computing=figures, figures=None, poll_seconds=computing_poll_seconds())
    else:
        context.update(
            figures=figures,
            freshness=freshness(figures, in_process=tasks_in_process()),
            poll_seconds=poll_seconds(),
        )
    return context


def _render(request: HttpRequest, template: str, slug: str) -> HttpResponse:
    project = project_for_lead(user=request.user, slug=slug)
    response = render(request, template, _context(project, figures_for_page(project)))
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required_htmx
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    return _render(request, "dashboard/dashboard.html", slug)


@require_GET
@login_required_htmx
def figures(request: HttpRequest, slug: str) -> HttpResponse:
    """The figures alone: what the page's HTMX poll swaps in."""
    return _render(request, "dashboard/_figures.html", slug)
