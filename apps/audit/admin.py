import json
from typing import Any

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from annotate.admin_site import ReadOnlyAdmin
from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin[AuditEvent]):
    """The audit log, read-only. Leads see their projects' events and their own actions."""

    list_display = ["created_at", "actor_name", "action", "project", "target", "summary"]
    list_filter = ["action", ("project", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["actor_name", "target_repr"]
    date_hierarchy = "created_at"
    list_select_related = ["project"]
    fields = [
        "created_at",
        "actor_name",
        "action",
        "project",
        "target_type",
        "target_id",
        "target_repr",
        "details_json",
    ]
    readonly_fields = [
        "created_at",
        "actor_name",
        "action",
        "project",
        "target_type",
        "target_id",
        "target_repr",
        "details_json",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_staff:
            return queryset
        return queryset.filter(
            Q(project__in=self._led(request).values("pk")) | Q(actor_id=request.user.pk)
        )

    def _owns(self, request: HttpRequest, obj: Model | None) -> bool:
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    @admin.display(description="object")
    def target(self, event: AuditEvent) -> str:
        if not event.target_type:
            return "—"
        return f"{event.target_repr} ({event.target_type} {event.target_id})"

    @admin.display(description="details")
    def summary(self, event: AuditEvent) -> str:
        text = json.dumps(event.details, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= 160 else text[:157] + "..."

    @admin.display(description="details")
    def details_json(self, event: AuditEvent) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(event.details, ensure_ascii=False, indent=2, sort_keys=True)
        )
