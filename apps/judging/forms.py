from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import QuerySet

from apps.projects.models import Membership, Project


class InvalidateForm(forms.Form):
    """Invalidate an annotator's judgments in a project: all, or those given since a time."""

    project = forms.ModelChoiceField(queryset=Project.objects.none())
    annotator = forms.CharField(
        max_length=150, help_text="Their username. They must be (or have been) a member."
    )
    since = forms.DateTimeField(
        required=False,
        label="Since (UTC)",
        help_text="Only judgments given at or after this time, in UTC (YYYY-MM-DD HH:MM), as the "
        "judgments list shows them. Empty: all.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Recorded with every judgment invalidated, and in the audit log.",
    )

    def __init__(self, *args: Any, projects: QuerySet[Project], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects  # type: ignore[attr-defined]

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if not reason:
            raise forms.ValidationError("Say why: the reason is recorded.")
        return reason

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        project, username = data.get("project"), data.get("annotator")
        if project is not None and username:
            member = (
                Membership.objects.filter(project=project, user__username=username)
                .select_related("user")
                .first()
            )
            if member is None:
                self.add_error("annotator", f"{username} is not a member of {project}.")
            else:
                data["user"] = member.user
        return data

    @property
    def user(self) -> User:
        user: User = self.cleaned_data["user"]
        return user


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Recorded with every judgment invalidated.",
    )

    def clean_reason(self) -> str:
        reason = str(self.cleaned_data["reason"]).strip()
        if not reason:
            raise forms.ValidationError("Say why: the reason is recorded.")
        return reason
