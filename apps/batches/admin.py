from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from annotate.admin_site import LeadScopedAdmin, ReadOnlyAdmin
from apps.batches.forms import BatchUploadForm
from apps.batches.import_format import ImportFormatError
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.services import batch_import
from apps.projects.selectors import projects_led_by


@admin.register(Batch)
class BatchAdmin(LeadScopedAdmin):
    lead_can_add = True
    lead_can_change = True
    list_display = [
        "__str__",
        "project",
        "status",
        "priority",
        "prompt_count",
        "comparison_count",
        "progress",
        "skips",
        "created_at",
    ]
    list_filter = ["status", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name"]
    fields = [
        "project",
        "name",
        "status",
        "priority",
        "annotator_cap",
        "prompt_count",
        "comparison_count",
        "errors",
        "created_by",
        "created_at",
        "finished_at",
    ]
    readonly_fields = [
        "project",
        "prompt_count",
        "comparison_count",
        "errors",
        "created_by",
        "created_at",
        "finished_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return (
            super()
            .get_queryset(request)
            .select_related("project")
            .annotate(
                complete=Count("comparisons", filter=Q(comparisons__complete=True)),
                skipped=Sum("comparisons__skip_count"),
            )
        )

    @admin.display(description="complete")
    def progress(self, batch: Batch) -> str:
        complete = getattr(batch, "complete", 0)
        total = batch.comparison_count
        percent = round(100 * complete / total) if total else 0
        return format_html(
            '<progress max="100" value="{}"></progress> {} / {} ({}%)',
            percent,
            complete,
            total,
            percent,
        )

    @admin.display(description="skips")
    def skips(self, batch: Batch) -> int:
        return getattr(batch, "skipped", None) or 0

    def get_urls(self) -> list[URLPattern]:
        upload = path(
            "upload/",
            self.admin_site.admin_view(self.upload_view),
            name="batches_batch_upload",
        )
        return [upload, *super().get_urls()]

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return redirect("admin:batches_batch_upload")

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return redirect("admin:index")
        projects = projects_led_by(request.user)
        errors: list[dict[str, Any]] = []
        form = BatchUploadForm(request.POST or None, request.FILES or None, projects=projects)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                batch = batch_import(
                    project=form.cleaned_data["project"],
                    source=upload,
                    size=upload.size,
                    name=form.cleaned_data["name"] or upload.name,
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except ImportFormatError as exc:
                errors = [error.as_dict() for error in exc.errors]
                if exc.total > len(errors):
                    errors.append(
                        {"line": None, "error": f"... and {exc.total - len(errors)} more"}
                    )
            else:
                batch.refresh_from_db()
                if batch.status == BatchStatus.FAILED:
                    errors = batch.errors
                else:
                    if batch.status == BatchStatus.IMPORTING:
                        text = f"{batch} is importing in the background; refresh to see its status."
                    else:
                        text = (
                            f"Imported {batch}: {batch.prompt_count} prompts, "
                            f"{batch.comparison_count} comparisons."
                        )
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:batches_batch_change", args=[batch.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a batch",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/batches/upload.html", context)


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "project", "batch"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id"]
    list_select_related = ["project", "batch"]


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    project_field = "prompt__project"
    list_display = ["external_id", "prompt", "model"]
    list_filter = ["model"]
    search_fields = ["external_id", "model", "prompt__external_id"]
    list_select_related = ["prompt"]


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "project",
        "batch",
        "prompt",
        "judgment_count",
        "lease_count",
        "skip_count",
        "complete",
        "is_gold",
    ]
    list_filter = [
        ("project", admin.RelatedOnlyFieldListFilter),
        "batch__status",
        "complete",
        "is_gold",
    ]
    search_fields = ["prompt__external_id"]
    list_select_related = ["project", "batch", "prompt"]
