"""The annotator's pages: their projects, and the side-by-side judging page (HTMX + plain forms)."""

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.batches.honeypots import label_models
from apps.batches.models import Candidate
from apps.judging.answer_rules import allowed_choices, rationale_min
from apps.judging.answers import STRENGTH_RANGE
from apps.judging.keys import keymap
from apps.judging.models import Assignment, Choice, Judgment
from apps.judging.probes import (
    ProbeAnswered,
    ProbeError,
    ProbeNotFound,
    probe_answer,
    probe_lease,
    probe_next,
    probe_served,
    probe_skip,
)
from apps.judging.queue import (
    AnnotatorBlocked,
    AssignmentNotFound,
    JudgmentConflict,
    JudgmentError,
    Preference,
    assignment_next,
    assignment_release_refused,
    assignment_skip,
    comparison_peek,
    judgment_submit,
    judgment_undo,
)
from apps.judging.rendering import renderings_attach
from apps.judging.selectors import (
    progress_for_annotator,
    progress_in_project,
    projects_to_manage,
)
from apps.judging.suggestions import suggestion_for, suggestion_shown
from apps.projects.models import GRADES, Project, Scheme
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
    """Each user's projects: to judge (their own progress) and, for leads and staff, to manage."""
    user = request.user
    response = render(
        request,
        "judging/home.html",
        {
            "progress": progress_for_annotator(annotator=user),  # type: ignore[arg-type]
            "managed": projects_to_manage(user=user),  # type: ignore[arg-type]
        },
    )
    # "Left for you" is counted at each load: no cache may show an old one.
    response["Cache-Control"] = "no-store"
    return response


def _scheme_context(project: Project) -> dict[str, Any]:
    """What the judging form offers in this project: its scheme, criteria, flags, rationale."""
    graded = project.scheme == Scheme.GRADED
    if graded:
        options = [(str(value), label, f"{value:+d}" if value else "0") for value, label in GRADES]
    else:
        options = [(value, label, short) for value, label, short in _CRITERION_CHOICES]
        options = [
            o for o in options if o[0] in allowed_choices(project.allow_tie, project.allow_both_bad)
        ]
    return {
        "criteria": project.criteria,
        "criterion_options": options,
        "flags": project.flags,
        "listwise": project.scheme == Scheme.LISTWISE,
        "rationale_min": rationale_min(project),
    }


def _keys_context(project: Project) -> dict[str, Any]:
    """The page's keys (apps/judging/keys.py): the buttons, the help list, the scripts' table."""
    keys = keymap(project, skip_reasons=bool(project.skip_reasons))
    return {"keys": keys, "choices": keys.choices, "grades": keys.grades}


_CRITERION_CHOICES = [
    ("left", "Left is better", "Left"),
    ("right", "Right is better", "Right"),
    ("tie", "Tie", "Tie"),
    ("both_bad", "Both bad", "Both bad"),
]


def _answer_from_post(request: HttpRequest, project: Project, assignment_id: int) -> dict[str, Any]:
    """The judgment's fields from the form, as judgment_submit takes them."""
    post = request.POST
    strength: int | None = None
    raw_strength = post.get("strength", "")
    if raw_strength:
        try:
            strength = int(raw_strength)
        except ValueError:
            raise JudgmentError(f"strength must be a whole number {STRENGTH_RANGE}.") from None
    criteria: dict[str, Any] = {}
    for key in post:
        value = post.get(key, "")
        if key.startswith("criterion:"):
            name = key.removeprefix("criterion:")
            if project.scheme == Scheme.GRADED and value.lstrip("-").isdigit():
                criteria[name] = int(value)
            else:
                criteria[name] = value
    answer: dict[str, Any] = {
        "choice": post.get("choice") or None,
        "strength": strength,
        "criteria": criteria,
        "flags": post.getlist("flag"),
    }
    if project.scheme == Scheme.LISTWISE:
        answer["ranking"] = _ranking_from_post(post, request.user, assignment_id)
        answer["choice"] = None
    return answer


def _ranking_from_post(post: Any, annotator: Any, assignment_id: int) -> list[list[str]] | None:
    """`rank:<position shown>` = a place, 1..n, for each response: groups of equal places, best
    first, named by the responses' ids (the page names them by position only: it shows nothing
    that could hint at a model)."""
    order = (
        Assignment.objects.filter(pk=assignment_id, annotator=annotator)
        .values_list("shown_order", flat=True)
        .first()
    ) or []
    external = dict(Candidate.objects.filter(pk__in=order).values_list("id", "external_id"))
    places: dict[int, list[str]] = {}
    for key in post:
        if not key.startswith("rank:"):
            continue
        position, value = key.removeprefix("rank:"), post.get(key, "")
        if not value.isdigit() or not position.isdigit() or not 1 <= int(position) <= len(order):
            raise JudgmentError("Give every response a place in the ranking.")
        places.setdefault(int(value), []).append(external[order[int(position) - 1]])
    return [places[place] for place in sorted(places)] or None


def _render_annotate(
    request: HttpRequest,
    project: Project,
    *,
    notice: str = "",
    error: str = "",
    done: str = "",
    prefer: Preference | None = None,
    status: int = 200,
) -> HttpResponse:
    blocked = ""
    annotator: Any = request.user
    # A consistency probe that is due goes before the queue's next comparison, and looks like
    # any other (apps.judging.probes); only its form posts elsewhere.
    probe = probe_next(project=project, annotator=annotator)
    if probe is not None:
        assignment: Assignment | None = probe_lease(probe)
    else:
        try:
            assignment = assignment_next(project=project, annotator=annotator, prefer=prefer)
        except AnnotatorBlocked as exc:
            assignment, blocked = None, str(exc)
    if (
        prefer
        and assignment
        and probe is None
        and assignment.comparison_id != prefer.comparison_id
        and not error
    ):
        notice = notice or (
            "The comparison shown next was taken by others in the meantime; here is another."
        )
    # The comparison after this one, rendered into the card to be shown the moment this one is
    # judged (static/js/annotate.js); the judgment names it, and gets it if it is still free.
    peek = comparison_peek(project=project, annotator=annotator) if assignment else None
    if project.show_models:
        # A honeypot's degraded side shows its source's model label (apps/batches/honeypots.py).
        label_models(assignment)
        label_models(peek.assignment if peek else None)
    if project.show_ai_suggestion:
        for lease in (assignment, peek.assignment if peek else None):
            if lease is not None:
                lease.ai_suggestion = suggestion_for(lease)  # type: ignore[attr-defined]
    # The texts' stored HTML, in one query: the page never runs the Markdown parser itself.
    guidelines_html = renderings_attach(
        leases=[assignment, peek.assignment if peek else None], guidelines=project.guidelines
    )
    context = {
        "blocked": blocked,
        "skip_reasons": project.skip_reasons,
        "project": project,
        "assignment": assignment,
        "probe": probe,
        **_scheme_context(project),
        **_keys_context(project),
        "idempotency_key": secrets.token_urlsafe(16),
        "progress": progress_in_project(annotator=annotator, project=project),
        "peek": peek,
        "guidelines_html": guidelines_html,
        "notice": notice,
        "error": error,
        "done": done,
    }
    template = "judging/annotate.html"
    if getattr(request, "htmx", False):
        template += "#comparison-card"
    return render(request, template, context, status=status)


@login_required
@require_http_methods(["GET"])
def annotate(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _render_annotate(request, project)


def _act_then_continue(
    request: HttpRequest,
    project: Project,
    action: Callable[[], object],
    prefer: Preference | None = None,
    done: str = "",
) -> HttpResponse:
    """Runs a judge or skip action, then shows the next comparison.

    Bad input is shown with the same comparison. A double click, a retry or a lapsed lease is a
    notice: the first answer stands, and the annotator moves on. A success says `done` ("judged"
    or "skipped") in a brief status line. Without htmx, a success redirects
    (post/redirect/get) so that a reload does not post again.
    """
    notice = error = ""
    refused = False
    try:
        action()
    except JudgmentError as exc:
        error = str(exc)
    except (JudgmentConflict, AssignmentNotFound) as exc:
        notice = str(exc)
    except AnnotatorBlocked as exc:  # stopped since the lease was taken: released, say why
        notice, refused = str(exc), True
    if not getattr(request, "htmx", False) and not error and not refused:
        return redirect("annotate", slug=project.slug)
    return _render_annotate(
        request,
        project,
        notice=notice,
        error=error,
        done="" if notice or error else done,
        prefer=None if error else prefer,
    )


def _member_project(request: HttpRequest, slug: str, assignment_id: int) -> Project | HttpResponse:
    """The project of a judge or skip, for its member. One removed from it since taking the
    lease gets the refusal, their lease released, instead of a bare 404 (which htmx would not
    show); anyone else a 404, so that the project's existence is not revealed."""
    try:
        return project_for_member(user=request.user, slug=slug)
    except Http404:
        message = assignment_release_refused(
            assignment_id=assignment_id,
            annotator=request.user,  # type: ignore[arg-type]
        )
        if not message:
            raise
    # htmx swaps only a success into the card; a plain form post gets the page with a 403.
    htmx = getattr(request, "htmx", False)
    return render(
        request,
        "judging/refused.html#refused-card" if htmx else "judging/refused.html",
        {"message": message},
        status=200 if htmx else 403,
    )


@login_required_htmx
@require_POST
def judge(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = _member_project(request, slug, assignment_id)
    if isinstance(project, HttpResponse):
        return project
    duration = request.POST.get("duration_ms", "")

    def submit() -> Any:
        result = judgment_submit(
            assignment_id=assignment_id,
            annotator=request.user,  # type: ignore[arg-type]
            **_answer_from_post(request, project, assignment_id),
            rationale=request.POST.get("rationale", ""),
            idempotency_key=request.POST.get("idempotency_key", ""),
            duration_ms=int(duration) if duration.isdigit() and len(duration) < 10 else None,
        )
        if project.show_ai_suggestion and result.created:
            # Only this page shows AI verdicts: the API never does.
            suggestion_shown(result.judgment.pk, assignment_id)
        return result

    return _act_then_continue(
        request,
        project,
        submit,
        prefer=Preference.parse(request.POST.get("prefer", "")),
        done="judged",
    )


@login_required_htmx
@require_POST
def skip(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    project = _member_project(request, slug, assignment_id)
    if isinstance(project, HttpResponse):
        return project
    return _act_then_continue(
        request,
        project,
        lambda: assignment_skip(
            assignment_id=assignment_id,
            annotator=request.user,  # type: ignore[arg-type]
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
        ),
        done="skipped",
    )


@login_required_htmx
@require_POST
def undo(request: HttpRequest, slug: str) -> HttpResponse:
    """Takes back the last judgment and shows its comparison again, saying what it was."""
    project = project_for_member(user=request.user, slug=slug)
    try:
        result = judgment_undo(project=project, annotator=request.user)  # type: ignore[arg-type]
    except (JudgmentConflict, AnnotatorBlocked) as exc:
        return _render_annotate(request, project, notice=str(exc))
    if not getattr(request, "htmx", False):
        return redirect("annotate", slug=project.slug)
    return _render_annotate(
        request,
        project,
        notice=f"Undone: you had answered “{answer_label(result.undone)}”. Judge it again.",
    )


def _probe_done(
    request: HttpRequest, slug: str, probe_id: int, action: Callable[[Project], object]
) -> HttpResponse:
    """Runs an answer or skip of a consistency probe, then shows the next comparison, as
    _act_then_continue does for a lease. Bad input shows the probe again with the error (400
    for a plain form post); a second answer is a notice, the first one standing (409 for a plain
    form post); a probe not served to this annotator here is a 404."""
    project = project_for_member(user=request.user, slug=slug)
    htmx = getattr(request, "htmx", False)
    try:
        action(project)
    except ProbeNotFound:
        raise Http404("No such comparison.") from None
    except ProbeError as exc:
        return _render_annotate(request, project, error=str(exc), status=200 if htmx else 400)
    except ProbeAnswered as exc:
        return _render_annotate(request, project, notice=str(exc), status=200 if htmx else 409)
    if not htmx:
        return redirect("annotate", slug=project.slug)
    return _render_annotate(
        request, project, done="judged", prefer=Preference.parse(request.POST.get("prefer", ""))
    )


@login_required_htmx
@require_POST
def probe_judge(request: HttpRequest, slug: str, probe_id: int) -> HttpResponse:
    """The answer to a consistency probe (apps.judging.probes): the judging form, posted here."""

    def answer(project: Project) -> object:
        try:
            fields = _answer_from_post(request, project, 0)
        except JudgmentError as exc:
            # Another's probe is a 404 and an answered one a notice, whatever was sent.
            probe_served(probe_id=probe_id, project=project, annotator=request.user)  # type: ignore[arg-type]
            raise ProbeError(str(exc)) from None
        fields.pop("ranking", None)
        return probe_answer(
            probe_id=probe_id,
            project=project,
            annotator=request.user,  # type: ignore[arg-type]
            **fields,
            rationale=request.POST.get("rationale", ""),
        )

    return _probe_done(request, slug, probe_id, answer)


@login_required_htmx
@require_POST
def probe_pass(request: HttpRequest, slug: str, probe_id: int) -> HttpResponse:
    """A skip of a consistency probe: it is closed unanswered."""
    return _probe_done(
        request,
        slug,
        probe_id,
        lambda project: probe_skip(
            probe_id=probe_id,
            project=project,
            annotator=request.user,  # type: ignore[arg-type]
        ),
    )


def answer_label(judgment: Judgment) -> str:
    """A judgment's overall answer in words, on the screen's terms of its lease."""
    if judgment.strength is not None:
        left_is_a = judgment.left_id == judgment.comparison.candidate_a_id
        screen = -judgment.strength if left_is_a else judgment.strength
        return dict(GRADES)[screen]
    return Choice(judgment.choice).label
