from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.fields.related import ForeignKey
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse

from annotate.admin_site import LeadScopedAdmin
from annotate.errors import ApplicationError
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import (
    AUDITED_FIELDS,
    endpoint_delete,
    endpoint_problems,
    endpoint_save,
    endpoint_test,
    key_env_prefix,
)
from apps.projects.selectors import projects_led_by


class ModelEndpointForm(forms.ModelForm[ModelEndpoint]):
    class Meta:
        model = ModelEndpoint
        fields = list(AUDITED_FIELDS)  # every field a lead sets is audited

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key_env"].help_text = (
            "The name of the environment variable that holds the API key, starting with "
            f"{key_env_prefix()} (for example {key_env_prefix()}OPENAI); empty: no key. "
            "Set it in the environment of the web and worker processes. The key itself is "
            "never stored nor shown."
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problems = endpoint_problems(
            base_url=data.get("base_url") or "", key_env=data.get("key_env") or ""
        )
        for field, message in problems.items():
            if field in data:
                self.add_error(field, message)
        return data


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(LeadScopedAdmin[ModelEndpoint]):
    """Leads register and change the endpoints of the projects they lead; staff any, including
    the shared ones (no project). Saving, deleting and testing go through apps.endpoints.services
    (the rules and the audit)."""

    form = ModelEndpointForm
    lead_can_add = True
    lead_can_change = True
    lead_can_delete = True
    list_display = [
        "name",
        "project",
        "model",
        "base_url",
        "max_concurrency",
        "requests_per_minute",
    ]
    list_filter = ["project"]
    search_fields = ["name", "model", "base_url"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["test_connections"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelEndpoint]:
        return super().get_queryset(request).select_related("project")

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "project" and not request.user.is_staff:
            kwargs["queryset"] = projects_led_by(request.user)
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ModelEndpoint, form: Any, change: bool) -> None:
        endpoint_save(obj, by=request.user)

    def delete_model(self, request: HttpRequest, obj: ModelEndpoint) -> None:
        endpoint_delete(obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_delete(endpoint, by=request.user)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:endpoint_id>/test/",
                self.admin_site.admin_view(self.test_view),
                name="endpoints_modelendpoint_test",
            ),
            *super().get_urls(),
        ]

    def test_view(self, request: HttpRequest, endpoint_id: int) -> HttpResponse:
        """POST from the change page's button: test one endpoint's connection."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        endpoint = self.get_queryset(request).filter(pk=endpoint_id).first()
        if endpoint is None or not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        self._test(request, endpoint)
        return HttpResponseRedirect(
            reverse("admin:endpoints_modelendpoint_change", args=[endpoint.pk])
        )

    @admin.action(description="Test the connection of the selected endpoints")
    def test_connections(self, request: HttpRequest, queryset: QuerySet[ModelEndpoint]) -> None:
        for endpoint in queryset:
            self._test(request, endpoint)

    def _test(self, request: HttpRequest, endpoint: ModelEndpoint) -> None:
        try:
            result = endpoint_test(endpoint, by=request.user)
        except ApplicationError as error:
            self.message_user(request, f"{endpoint.name}: {error}", messages.ERROR)
            return
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"{endpoint.name}: {result.detail}", level)
