"""The annotator accounts page of the admin: leads see the annotators of their projects, create
accounts (one by one or from a CSV of emails), add them to projects, deactivate and reactivate
them, and issue set-password links. Every change goes through apps.accounts.services."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from apps.accounts.models import AnnotatorAccount
from apps.accounts.services import (
    AccountCsvError,
    AccountError,
    CsvLineError,
    NewAccount,
    account_deactivate,
    account_link_issue,
    account_reactivate,
    accounts_add_to_project,
    accounts_create_from_csv,
    accounts_visible_to,
)
from apps.projects.models import Membership, Project
from apps.projects.selectors import is_lead_anywhere, projects_led_by


class AccountsCreateForm(forms.Form):
    emails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text="One email address per line: each becomes an account (the address is also "
        "the username).",
    )
    file = forms.FileField(
        required=False,
        help_text="Or a CSV file of emails: one address a line, in the first column (a header "
        "line `email` and other columns are ignored).",
    )
    projects = forms.ModelMultipleChoiceField(
        queryset=Project.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The new accounts join these projects as annotators.",
    )

    def __init__(self, *args: Any, projects: QuerySet[Project], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["projects"].queryset = projects  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("file") and not (data.get("emails") or "").strip():
            raise forms.ValidationError("Give at least one email address, or a CSV file.")
        return data


class AddToProjectForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none())

    def __init__(self, *args: Any, projects: QuerySet[Project], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects  # type: ignore[attr-defined]


class AccountProjectFilter(admin.SimpleListFilter):
    title = "project"
    parameter_name = "project"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(p.pk), p.name) for p in projects_led_by(request.user)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() and self.value().isdigit():  # type: ignore[union-attr]
            led = projects_led_by(request.user).filter(pk=int(self.value()))  # type: ignore[arg-type]
            return queryset.filter(memberships__project__in=led).distinct()
        return queryset


@admin.register(AnnotatorAccount)
class AnnotatorAccountAdmin(admin.ModelAdmin[AnnotatorAccount]):
    """Annotator accounts: leads see the annotators of their projects, staff every account that
    is not staff. Created here (one by one or from a CSV), never edited; deactivated and
    reactivated by action."""

    list_display = ["username", "email", "is_active", "password_set", "projects", "last_login"]
    list_filter = ["is_active", AccountProjectFilter]
    search_fields = ["username", "email"]
    fields = ["username", "email", "is_active", "password_set", "projects", "last_login"]
    readonly_fields = ["username", "email", "is_active", "password_set", "projects", "last_login"]
    actions = ["add_to_project", "deactivate_accounts", "reactivate_accounts", "issue_links"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        ids = accounts_visible_to(request.user).values("pk")
        # Only memberships of projects the viewer leads: a lead does not learn the others.
        visible = Membership.objects.filter(
            project__in=projects_led_by(request.user).values("pk")
        ).select_related("project")
        return (
            AnnotatorAccount.objects.filter(pk__in=ids)
            .prefetch_related(Prefetch("memberships", visible, to_attr="visible_memberships"))
            .order_by("username")
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff or is_lead_anywhere(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if not self.has_module_permission(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="password set", boolean=True)
    def password_set(self, account: User) -> bool:
        return account.has_usable_password()

    @admin.display(description="projects (role)")
    def projects(self, account: User) -> str:
        memberships = getattr(account, "visible_memberships", [])
        return ", ".join(f"{m.project.name} ({m.role})" for m in memberships) or "—"

    def get_urls(self) -> list[URLPattern]:
        create = path(
            "create/",
            self.admin_site.admin_view(self.create_view),
            name="accounts_annotatoraccount_create",
        )
        return [create, *super().get_urls()]

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return redirect("admin:accounts_annotatoraccount_create")

    def _links_page(
        self, request: HttpRequest, title: str, created: list[NewAccount]
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "accounts": created,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/accounts/account_links.html", context)
        response["Cache-Control"] = "no-store"  # the links are secrets
        return response

    def create_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        projects = projects_led_by(request.user)
        form = AccountsCreateForm(request.POST or None, request.FILES or None, projects=projects)
        errors: list[CsvLineError] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            data = upload.read() if upload else form.cleaned_data["emails"].encode()
            try:
                created = accounts_create_from_csv(
                    data=data,
                    projects=form.cleaned_data["projects"],
                    by=request.user,
                    base_url=request.build_absolute_uri("/"),
                )
            except AccountCsvError as exc:
                errors = exc.errors
            except AccountError as exc:
                form.add_error(None, str(exc))
            else:
                return self._links_page(request, f"{len(created)} account(s) created", created)
        context = {
            **self.admin_site.each_context(request),
            "title": "Create annotator accounts",
            "form": form,
            "errors": errors,
            "source": "the file" if request.FILES.get("file") else "the list",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/accounts/accounts_create.html", context)

    @admin.action(description="Add the selected accounts to a project")
    def add_to_project(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        projects = projects_led_by(request.user)
        form = AddToProjectForm(
            request.POST if "apply" in request.POST else None, projects=projects
        )
        if form.is_bound and form.is_valid():
            project = form.cleaned_data["project"]
            try:
                added = accounts_add_to_project(accounts=queryset, project=project, by=request.user)
            except AccountError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return None
            self.message_user(
                request, f"Added {added} account(s) to {project} as annotators.", messages.SUCCESS
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Add accounts to a project",
            "form": form,
            "accounts": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/add_to_project.html", context)

    @admin.action(description="Deactivate the selected accounts (their open leases return)")
    def deactivate_accounts(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for account in queryset:
            if not account.is_active:
                continue
            try:
                released = account_deactivate(account=account, by=request.user)
            except AccountError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"Deactivated {account.get_username()}; {released} open lease(s) released.",
                    messages.SUCCESS,
                )

    @admin.action(description="Reactivate the selected accounts")
    def reactivate_accounts(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for account in queryset:
            if account.is_active:
                self.message_user(
                    request,
                    f"The account {account.get_username()} is active already.",
                    messages.INFO,
                )
                continue
            try:
                account_reactivate(account=account, by=request.user)
            except AccountError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"Reactivated {account.get_username()}: they can log in again (their "
                    "released leases and any invalidated judgments stay as they are).",
                    messages.SUCCESS,
                )

    @admin.action(description="New one-time set-password links")
    def issue_links(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        issued = []
        for account in queryset:
            try:
                issued.append(
                    account_link_issue(
                        account=account, by=request.user, base_url=request.build_absolute_uri("/")
                    )
                )
            except AccountError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if not issued:
            return None
        return self._links_page(request, "Set-password links", issued)
