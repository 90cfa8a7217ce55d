from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from annotate.admin_site import ReadOnlyAdmin
from apps.exports.jobs import NotCancellable, export_job_cancel
from apps.exports.models import ExportJob, ExportStatus


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    """Background exports: requested through the API, run by the workers; leads see their
    projects' jobs, download what is done and cancel what is queued or running."""

    # Narrow: the admin's sidebar and filters leave the list little room at 1280 px.
    list_display = ["id", "project_slug", "what", "status", "progress", "files", "created_at"]
    list_filter = ["status", "file_format", "format"]
    search_fields = ["project__slug"]
    list_select_related = ["project"]
    readonly_fields = [field.name for field in ExportJob._meta.fields]
    actions = ["cancel_jobs"]

    @admin.display(description="Project", ordering="project__slug")
    def project_slug(self, job: ExportJob) -> str:
        return job.project.slug

    @admin.display(description="Export", ordering="format")
    def what(self, job: ExportJob) -> str:
        return f"{job.format} ({job.get_file_format_display()})"

    @admin.display(description="Rows")
    def progress(self, job: ExportJob) -> str:
        if job.rows_total is None or job.status == ExportStatus.DONE:
            return f"{job.rows_written:,}"
        return f"{job.rows_written:,} of about {job.rows_total:,}"

    @admin.display(description="Files")
    def files(self, job: ExportJob) -> str:
        if job.status != ExportStatus.DONE:
            return "-"
        kwargs = {"slug": job.project.slug, "job_id": job.pk}
        links = [
            (reverse("api-export-job-download", kwargs=kwargs), job.file_format),
            (reverse("api-export-job-card", kwargs=kwargs), "card"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    @admin.action(description="Cancel the selected exports (queued or running)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for job in queryset:
            try:
                export_job_cancel(job=job, user=request.user)  # type: ignore[arg-type]
            except NotCancellable as exc:
                self.message_user(
                    request,
                    format_html(
                        "Export {} is {}: only a queued or running export can be cancelled.",
                        job.pk,
                        exc.status,
                    ),
                    messages.WARNING,
                )
            else:
                self.message_user(request, f"Cancelled export {job.pk}.", messages.SUCCESS)
