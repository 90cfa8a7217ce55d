from django.contrib import admin

from annotate.admin_site import ReadOnlyAdmin
from apps.judging.models import Assignment, Judgment, Skip


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    project_field = "comparison__project"
    list_display = [
        "id",
        "comparison",
        "annotator",
        "choice",
        "chosen",
        "duration_ms",
        "created_at",
    ]
    list_filter = [
        "choice",
        ("comparison__project", admin.RelatedOnlyFieldListFilter),
        ("comparison__batch", admin.RelatedOnlyFieldListFilter),
        ("annotator", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["rationale", "comparison__prompt__external_id", "annotator__username"]
    list_select_related = ["comparison", "annotator", "chosen"]
    date_hierarchy = "created_at"


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "comparison", "annotator", "status", "created_at", "expires_at"]
    list_filter = ["status", ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["comparison", "annotator"]


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin):
    project_field = "comparison__project"
    list_display = ["id", "comparison", "annotator", "reason", "note", "created_at"]
    list_filter = [
        "reason",
        ("comparison__project", admin.RelatedOnlyFieldListFilter),
        ("annotator", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["comparison", "annotator"]
