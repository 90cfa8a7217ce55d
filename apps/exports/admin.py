from django.contrib import admin

from annotate.admin_site import ReadOnlyAdmin
from apps.exports.models import ExportJob


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    """Background exports, read-only: requested through the API, run by the workers; leads see
    their projects' jobs."""

    list_display = [
        "id",
        "project",
        "format",
        "file_format",
        "status",
        "rows_written",
        "rows_total",
        "attempts",
        "created_at",
        "expires_at",
    ]
    list_filter = ["status", "file_format", "format"]
    search_fields = ["project__slug"]
    list_select_related = ["project"]
    readonly_fields = [field.name for field in ExportJob._meta.fields]
