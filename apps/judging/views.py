"""The annotator's pages: their projects, and the side-by-side judging page (HTMX + plain forms)."""

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.judging.models import Choice
from apps.judging.selectors import judgment_count_for, progress_for_annotator
from apps.judging.services import (
    AnnotatorBlocked,
    AssignmentNotFound,
    JudgmentConflict,
    JudgmentError,
    assignment_next,
    assignment_skip,
    judgment_submit,
)
from apps.projects.models import Project
from apps.projects.selectors import project_for_member


def login_required_htmx(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """login_required that, for an htmx request, sends the whole page to the login form.

    A plain redirect would be followed inside the XHR and swap the login page into the card.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated and getattr(request, "htmx", False):
            page = request.htmx.current_url_abs_path or "/"  # type: ignore[attr-defined]
            return HttpResponseClientRedirect(redirect_to_login(page, reverse("login")).url)
        return login_required(view)(request, *args, **kwargs)

    return wrapper


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "judging/home.html",
        {"progress": progress_for_annotator(annotator=request.user)},  # type: ignore[arg-type]
    )


def _choices(project: Project) -> list[tuple[str, str, str]]:
    """(value, label, keys) for each choice the project offers, in key order."""
    choices = [
        (Choice.LEFT.value, "Left is better", "1 or ←"),
        (Choice.RIGHT.value, "Right is better", "2 or →"),
    ]
    if project.allow_tie:
        choices.append((Choice.TIE.value, "Tie", "3"))
    if project.allow_both_bad:
        choices.append((Choice.BOTH_BAD.value, "Both bad", "4"))
    return choices


def _render_annotate(
    request: HttpRequest, project: Project, *, notice: str = "", error: str = ""
) -> HttpResponse:
    blocked = ""
    try:
        assignment = assignment_next(project=project, annotator=request.user)  # type: ignore[arg-type]
    except AnnotatorBlocked as exc:
        assignment, blocked = None, str(exc)
    context = {
        "blocked": blocked,
        "skip_reasons": project.skip_reasons,
        "project": project,
        "assignment": assignment,
        "choices": _choices(project),
        "idempotency_key": secrets.token_urlsafe(16),
        "judged": judgment_count_for(annotator=request.user, project=project),  # type: ignore[arg-type]
        "notice": notice,
        "error": error,
    }
    template = "judging/annotate.html"
    if getattr(request, "htmx", False):
        template += "#comparison-card"
    return render(request, template, context)


@login_required
@require_http_methods(["GET"])
def annotate(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _render_annotate(request, project)


def _act_then_continue(
    request: HttpRequest, project: Project, action: Callable[[], object]
) -> HttpResponse:
    """Runs a judge or skip action, then shows the next comparison.

    Bad input is shown with the same comparison. A double click, a retry or a lapsed lease is a
    notice: the first answer stands, and the annotator moves on. Without htmx, a success
    redirects (post/redirect/get) so that a reload does not post again.
    """
    notice = error = ""
    try:
        action()
    except JudgmentError as exc:
        error = str(exc)
    except (JudgmentConflict, AssignmentNotFound) as exc:
        notice = str(exc)
    if not getattr(request, "htmx", False) and not error:
        return redirect("annotate", slug=project.slug)
    return _render_annotate(request, project, notice=notice, error=error)


@login_required_htmx
@require_POST
def judge(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    duration = request.POST.get("duration_ms", "")
    return _act_then_continue(
        request,
        project,
        lambda: judgment_submit(
            assignment_id=assignment_id,
            annotator=request.user,  # type: ignore[arg-type]
            choice=request.POST.get("choice", ""),
            rationale=request.POST.get("rationale", ""),
            idempotency_key=request.POST.get("idempotency_key", ""),
            duration_ms=int(duration) if duration.isdigit() and len(duration) < 10 else None,
        ),
    )


@login_required_htmx
@require_POST
def skip(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _act_then_continue(
        request,
        project,
        lambda: assignment_skip(
            assignment_id=assignment_id,
            annotator=request.user,  # type: ignore[arg-type]
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
        ),
    )
