from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from annotate.admin_site import LeadScopedAdmin
from apps.projects.models import GuidelineVersion, Membership, Project
from apps.projects.services import project_guidelines_set, project_overlap_changed


class MembershipForm(forms.ModelForm):
    """Members are added by username, so that a lead is never shown a list of every account."""

    username = forms.CharField(max_length=150)

    class Meta:
        model = Membership
        fields = ["role"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["username"].initial = self.instance.user.get_username()

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No user named {username!r}.")
        self.instance.user = user
        return username


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    ordering = ["user__username"]
    extra = 1
    fields = ["username", "role", "pseudonym", "judgment_count", "skip_count", "gold", "status"]
    readonly_fields = ["pseudonym", "judgment_count", "skip_count", "gold", "status"]

    @admin.display(description="gold accuracy")
    def gold(self, membership: Membership) -> str:
        if not membership.pk or membership.gold_accuracy is None:
            return "—"
        return (
            f"{membership.gold_accuracy:.0%} "
            f"({membership.gold_correct} of {membership.gold_answered})"
        )

    @admin.display(description="receives work")
    def status(self, membership: Membership) -> str:
        if not membership.pk:
            return ""
        reason = membership.blocked_reason()
        return f"No: {reason}" if reason else "Yes"

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True


@admin.register(Project)
class ProjectAdmin(LeadScopedAdmin):
    lead_can_change = True
    list_display = [
        "name",
        "slug",
        "overlap",
        "allow_tie",
        "allow_both_bad",
        "created_at",
        "dashboard",
    ]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "guidelines"]}),
        (
            "Judging",
            {
                "fields": [
                    "scheme",
                    "allow_tie",
                    "allow_both_bad",
                    "criteria",
                    "rationale",
                    "rationale_min_length",
                    "flags",
                    "skip_reasons",
                    "show_models",
                    "overlap",
                ]
            },
        ),
        ("Queue", {"fields": ["policy", "lease_seconds", "annotator_cap"]}),
        ("Gold items", {"fields": ["gold_rate", "gold_min_accuracy", "gold_min_answers"]}),
    ]

    @admin.display(description="dashboard")
    def dashboard(self, project: Project) -> str:
        return format_html(
            '<a href="{}">Dashboard<span class="visually-hidden"> of {}</span></a>',
            reverse("dashboard", args=[project.slug]),
            project.name,
        )

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {} if obj is not None else {"slug": ["name"]}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The slug is in every URL and API client; it is fixed once the project exists.
        return ["slug"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        new_guidelines = obj.guidelines
        if change and "guidelines" in form.changed_data:
            # Saved through the service below, which makes the new version.
            obj.guidelines = Project.objects.values_list("guidelines", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if not change:
            GuidelineVersion.objects.create(
                project=obj,
                version=obj.guideline_version,
                text=obj.guidelines,
                created_by=obj.created_by,
            )
        elif "guidelines" in form.changed_data:
            project_guidelines_set(project=obj, text=new_guidelines, by=request.user)  # type: ignore[arg-type]
        if change and "overlap" in form.changed_data:
            project_overlap_changed(project=obj)
