from collections import defaultdict
from datetime import UTC
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from annotate.admin_site import ReadOnlyAdmin
from apps.judging.forms import InvalidateForm, ReasonForm
from apps.judging.models import Assignment, Judgment, Skip
from apps.judging.queue import judgments_invalidate
from apps.projects.models import Project
from apps.projects.selectors import projects_led_by


class ValidityFilter(admin.SimpleListFilter):
    title = "validity"
    parameter_name = "valid"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Counted"), ("no", "Invalidated")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(invalidated_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(invalidated_at__isnull=False)
        return queryset


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin[Judgment]):
    project_field = "comparison__project"
    # Narrow columns, so that all of them fit beside the filters at 1366 px.
    list_display = [
        "id",
        "comparison_and_prompt",
        "who",
        "choice",
        "chosen",
        "time_on_task",
        "judged_at",
        "counted",
    ]
    list_filter = [
        ValidityFilter,
        "source",
        "choice",
        ("comparison__project", admin.RelatedOnlyFieldListFilter),
        ("comparison__batch", admin.RelatedOnlyFieldListFilter),
        ("annotator", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["rationale", "comparison__prompt__external_id", "annotator__username"]
    list_select_related = ["comparison__prompt", "annotator", "chosen"]
    date_hierarchy = "created_at"
    actions = ["invalidate_selected"]
    change_list_template = "admin/judging/judgment/change_list.html"

    @admin.display(description="comparison (prompt)", ordering="comparison")
    def comparison_and_prompt(self, judgment: Judgment) -> str:
        return f"{judgment.comparison_id} ({judgment.comparison.prompt.external_id})"

    @admin.display(description="annotator", ordering="annotator__username")
    def who(self, judgment: Judgment) -> str:
        """The annotator, marked when it is an AI judge's account (source "ai")."""
        name = judgment.annotator.get_username()
        return f"{name} (AI)" if judgment.source == "ai" else name

    @admin.display(description="time", ordering="duration_ms")
    def time_on_task(self, judgment: Judgment) -> str:
        if judgment.duration_ms is None:
            return "-"
        return f"{judgment.duration_ms / 1000:.1f} s"

    @admin.display(description="judged (UTC)", ordering="created_at")
    def judged_at(self, judgment: Judgment) -> str:
        return f"{judgment.created_at.astimezone(UTC):%Y-%m-%d %H:%M}"

    @admin.display(boolean=True, description="counted")
    def counted(self, judgment: Judgment) -> bool:
        return judgment.invalidated_at is None

    def get_urls(self) -> list[URLPattern]:
        invalidate = path(
            "invalidate/",
            self.admin_site.admin_view(self.invalidate_view),
            name="judging_judgment_invalidate",
        )
        return [invalidate, *super().get_urls()]

    def invalidate_view(self, request: HttpRequest) -> HttpResponse:
        """Invalidate an annotator's judgments in a project the user leads: a form, a preview of
        how many would go, then the change."""
        projects = projects_led_by(request.user)
        if not projects.exists():
            return HttpResponseRedirect(reverse("admin:index"))
        form = InvalidateForm(request.POST or None, projects=projects)
        preview = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            targets = Judgment.objects.filter(
                comparison__project=data["project"],
                annotator=form.user,
                invalidated_at__isnull=True,
            )
            if data["since"] is not None:
                targets = targets.filter(created_at__gte=data["since"])
            if "confirm" in request.POST:
                result = judgments_invalidate(
                    project=data["project"],
                    annotator=form.user,
                    actor=request.user,  # type: ignore[arg-type]
                    reason=data["reason"],
                    since=data["since"],
                )
                self.message_user(request, _summary(result), messages.SUCCESS)
                url = reverse("admin:judging_judgment_changelist")
                return HttpResponseRedirect(f"{url}?annotator__id__exact={form.user.pk}")
            preview = {"judgments": targets.count(), "comparisons": _comparisons(targets)}
        context = {
            **self.admin_site.each_context(request),
            "title": "Invalidate an annotator's judgments",
            "form": form,
            "preview": preview,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/judging/invalidate.html", context)

    @admin.action(description="Invalidate the selected judgments")
    def invalidate_selected(
        self, request: HttpRequest, queryset: QuerySet[Judgment]
    ) -> HttpResponse | None:
        led = set(projects_led_by(request.user).values_list("pk", flat=True))
        chosen = queryset.filter(invalidated_at__isnull=True, comparison__project_id__in=led)
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            groups: dict[tuple[int, int], list[int]] = defaultdict(list)
            for pk, project_id, annotator_id in chosen.values_list(
                "pk", "comparison__project_id", "annotator_id"
            ):
                groups[(project_id, annotator_id)].append(pk)
            projects = Project.objects.in_bulk([project_id for project_id, _ in groups])
            users = User.objects.in_bulk([user_id for _, user_id in groups])
            marked = 0
            for (project_id, annotator_id), ids in sorted(groups.items()):
                annotator = users[annotator_id]
                marked += judgments_invalidate(
                    project=projects[project_id],
                    annotator=annotator,
                    actor=request.user,  # type: ignore[arg-type]
                    reason=form.cleaned_data["reason"],
                    judgment_ids=ids,
                ).judgments
            self.message_user(
                request,
                f"{marked} judgment{'s' if marked != 1 else ''} invalidated; their comparisons "
                "take new votes.",
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Invalidate the selected judgments",
            "form": form,
            "judgments": chosen.select_related("annotator", "comparison__prompt")[:200],
            "count": chosen.count(),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/judging/invalidate_selected.html", context)


def _comparisons(judgments: QuerySet[Judgment]) -> int:
    return judgments.values("comparison_id").distinct().count()


def _summary(result: Any) -> str:
    return (
        f"{result.judgments} judgment{'s' if result.judgments != 1 else ''} invalidated; "
        f"{result.comparisons} comparison{'s' if result.comparisons != 1 else ''} recounted, "
        f"{result.reopened} reopened for new votes."
    )


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin[Assignment]):
    list_display = ["id", "comparison", "annotator", "status", "created_at", "expires_at"]
    list_filter = ["status", ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["comparison__prompt", "annotator"]


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin[Skip]):
    project_field = "comparison__project"
    list_display = ["id", "comparison", "annotator", "reason", "note", "created_at"]
    list_filter = [
        "reason",
        ("comparison__project", admin.RelatedOnlyFieldListFilter),
        ("annotator", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["comparison__prompt", "annotator"]
