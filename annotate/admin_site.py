from typing import Any, TypeVar

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from apps.projects.models import Project
from apps.projects.selectors import is_lead_anywhere, projects_led_by

_M = TypeVar("_M", bound=Model)


class LeadAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, which lets project leads in too (Django's wants staff)."""

    def confirm_login_allowed(self, user: Any) -> None:
        if user.is_active and not user.is_staff and is_lead_anywhere(user):
            return
        super().confirm_login_allowed(user)


class AnnotateAdminSite(admin.AdminSite):
    """The Django admin, open to staff and to project leads.

    Staff see and change everything. A lead who is not staff reaches only the models that
    subclass LeadScopedAdmin, filtered to the projects they lead.
    """

    site_header = "annotate admin"
    site_title = "annotate admin"
    index_title = "Projects, batches and judgments"
    login_form = LeadAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and (user.is_staff or is_lead_anywhere(user)))


class LeadScopedAdmin(admin.ModelAdmin[_M]):
    """Scopes a model admin to the projects a lead leads. `project_field` is the path to it."""

    project_field = "project"
    lead_can_add = False
    lead_can_change = False
    lead_can_delete = False

    def _led(self, request: HttpRequest) -> QuerySet[Project]:
        return projects_led_by(request.user)

    def _owns(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None:
            return True
        project_id = obj.pk if isinstance(obj, Project) else self._project_id(obj)
        return self._led(request).filter(pk=project_id).exists()

    def _project_id(self, obj: Model) -> Any:
        value: Any = obj
        for part in self.project_field.split("__"):
            value = getattr(value, part)
        return value.pk

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_staff:
            return queryset
        if self.model is Project:
            return queryset.filter(pk__in=self._led(request).values("pk"))
        return queryset.filter(**{f"{self.project_field}__in": self._led(request).values("pk")})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff or is_lead_anywhere(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if request.user.is_staff:
            return True
        return self._owns(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff or self.lead_can_add)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if request.user.is_staff:
            return True
        return self.lead_can_change and self._owns(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if request.user.is_staff:
            return True
        return self.lead_can_delete and self._owns(request, obj)


class ReadOnlyAdmin(LeadScopedAdmin[_M]):
    """Imported data and votes: visible, never edited or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
