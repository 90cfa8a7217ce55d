"""The project dashboard: one page per project for staff and its leads, refreshed by HTMX."""

from datetime import date
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.dashboard import charts
from apps.dashboard.figures import DAYS_SHOWN
from apps.dashboard.services import figures_for_page, freshness, poll_seconds, refresh_seconds
from apps.judging.views import login_required_htmx
from apps.projects.models import Project
from apps.projects.selectors import project_for_lead


def _charts(figures: dict[str, Any]) -> dict[str, str]:
    """The SVG of every chart, from the cached figures."""
    name = figures["project"]["name"]
    days = figures["per_day"]
    buckets = figures["durations"]["buckets"]
    people = figures["throughput"]
    models = figures["models"]
    return {
        "progress": charts.progress_chart(
            "chart-progress",
            title=f"Progress per batch of {name}",
            desc="For each batch, a bar split into comparisons done, in progress (leased now) "
            "and open. The table below gives the numbers.",
            batches=figures["batches"],
        ),
        "per_day": charts.column_chart(
            "chart-per-day",
            title="Judgments per day (UTC)",
            desc=f"One bar per day, the last {len(days)} days with the latest on the right; "
            "the table below gives each day's count.",
            labels=[date.fromisoformat(d["day"]).strftime("%m-%d") for d in days],
            values=[d["judgments"] for d in days],
            unit="judgments",
            label_every=max(1, len(days) // 8),
        ),
        "durations": charts.column_chart(
            "chart-durations",
            title="Time per judgment",
            desc="How many judgments took each span of time, from the first sight of the "
            "comparison to the submission. The table below gives the counts.",
            labels=[b["label"] for b in buckets],
            values=[b["count"] for b in buckets],
            unit="judgments",
        ),
        "throughput": charts.bar_chart(
            "chart-throughput",
            title="Judgments per annotator",
            desc="One bar per annotator, most judgments first; the table gives their rates.",
            labels=[p["username"] for p in people],
            values=[p["judgments"] for p in people],
            unit="judgments",
        ),
        "leaderboard": charts.interval_chart(
            "chart-leaderboard",
            title="Bradley-Terry scores of the models, with 95% intervals",
            desc="Each model's score (dot) and its 95% bootstrap interval (whiskers); the mean "
            "score is 1000, and 400 points are 10:1 odds. The table gives the numbers.",
            rows=models["leaderboard"],
        ),
        "heat_map": charts.heat_map(
            "chart-heat-map",
            title="Win rates between the models",
            desc="Each cell is the row model's win rate against the column model (ties count "
            "half): blue above 50%, red below, grey where they never met.",
            names=models["names"],
            matrix=models["matrix"],
            votes=models["votes"],
        ),
    }


def _context(project: Project, figures: dict[str, Any] | None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "project": project,
        "figures": figures,
        "poll_seconds": poll_seconds(),
        "refresh_seconds": refresh_seconds(),
        "days_shown": DAYS_SHOWN,
    }
    if figures is not None:
        context["freshness"] = freshness(figures)
        context["charts"] = _charts(figures)
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
