from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from annotate.admin_site import LeadScopedAdmin
from apps.audit.models import AuditAction
from apps.audit.services import audit_record, changes_of
from apps.batches.audit import audit_sample_mark
from apps.judging.markdown import render_guidelines
from apps.judging.queue import overlap_changed
from apps.projects.models import (
    MAX_CRITERIA,
    MAX_FLAGS,
    Membership,
    Project,
    RationaleRule,
)
from apps.projects.services import (
    member_addable,
    member_to_add,
    membership_add,
    membership_problem,
    membership_remove,
    project_guidelines_set,
    project_insert,
)


class MembershipForm(forms.ModelForm[Membership]):
    """Members are added by username, so that a lead is never shown a list of every account.

    A username the actor may not add (see `member_addable`) gets the answer an unknown one
    gets: the form does not tell them apart.
    """

    username = forms.CharField(max_length=150)

    class Meta:
        model = Membership
        fields = ["role"]

    def __init__(self, *args: Any, actor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor = actor
        if self.instance.pk:
            self.fields["username"].initial = self.instance.user.get_username()

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        unchanged = self.instance.pk and self.instance.user.get_username() == username
        if unchanged:
            return username
        project = getattr(self.instance, "project", None)
        if project is not None and project.pk is not None:
            user = member_to_add(project=project, username=username, by=self.actor)
        else:  # a project being created: no one is a member yet
            user = User.objects.filter(username=username).first()
            if user is not None and not member_addable(user=user, by=self.actor):
                user = None
        if user is None:
            raise forms.ValidationError(f"No user named {username!r} that you can add.")
        self.instance.user = user
        return username


class MembershipFormSet(forms.BaseInlineFormSet[Membership, Project, forms.ModelForm[Membership]]):
    """Checks each change against the services' rules before anything is saved, so that a lead
    demoting or removing themself is told why beside the members, and nothing is saved."""

    def clean(self) -> None:
        super().clean()
        actor = self.form_kwargs.get("actor")
        project = self.instance
        if actor is None:
            return
        problems = []
        deleted = {id(form) for form in self.deleted_forms}
        for form in self.forms:
            membership = form.instance
            if not hasattr(form, "cleaned_data") or "username" in form.errors:
                continue
            if project.pk is None:  # a project being created, which the actor will lead
                if id(form) not in deleted and form.has_changed():
                    problem = membership_problem(
                        project=project,
                        user=membership.user,
                        old_role=None,
                        new_role=membership.role,
                        by=actor,
                        creating=True,
                    )
                    problems += [problem] if problem else []
                continue
            old = (
                Membership.objects.select_related("user").filter(pk=membership.pk).first()
                if membership.pk
                else None
            )
            changes: list[tuple[User, str | None, str | None]] = []
            if id(form) in deleted:
                if old is not None:
                    changes.append((old.user, old.role, None))
            elif form.has_changed():
                if old is not None and old.user_id != membership.user_id:
                    changes.append((old.user, old.role, None))
                    old = None
                if old is None:
                    old = Membership.objects.filter(project=project, user=membership.user).first()
                changes.append((membership.user, old.role if old else None, membership.role))
            for user, old_role, new_role in changes:
                problem = membership_problem(
                    project=project, user=user, old_role=old_role, new_role=new_role, by=actor
                )
                if problem:
                    problems.append(problem)
        if problems:
            raise forms.ValidationError(problems)


class MembershipInline(admin.TabularInline[Membership, Project]):
    model = Membership
    form = MembershipForm
    formset = MembershipFormSet
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


# Every setting a lead edits, in the form's order: the form's three sections.
JUDGING_SETTINGS = (
    "scheme",
    "allow_tie",
    "allow_both_bad",
    "criteria",
    "rationale",
    "rationale_min_length",
    "flags",
    "skip_reasons",
    "show_models",
    "show_ai_suggestion",
    "overlap",
)
QUEUE_SETTINGS = (
    "policy",
    "lease_seconds",
    "annotator_cap",
    "stop_confidence",
    "audit_rate",
    "repeat_rate",
    "repeat_after",
)
GOLD_SETTINGS = ("gold_rate", "gold_min_accuracy", "gold_min_answers", "honeypot_rate")
AUDITED_SETTINGS_FORM = [*JUDGING_SETTINGS, *QUEUE_SETTINGS, *GOLD_SETTINGS]


class LinesField(forms.CharField):
    """A list of short names, edited one per line."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [line.strip() for line in str(text).splitlines() if line.strip()]


class CriteriaField(LinesField):
    """Criteria, one per line: `name: what it means` (the description is optional)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(
                f"{c.get('name')}: {c['description']}"
                if isinstance(c, dict) and c.get("description")
                else str(c.get("name") if isinstance(c, dict) else c)
                for c in value
            )
        return value

    def to_python(self, value: Any) -> list[dict[str, str]]:  # type: ignore[override]
        criteria = []
        for line in super().to_python(value):
            name, _, description = line.partition(":")
            criterion = {"name": name.strip()}
            if description.strip():
                criterion["description"] = description.strip()
            criteria.append(criterion)
        return criteria


class GuidelinesWidget(forms.Textarea):
    """A Markdown textarea with a live preview beside it: HTMX posts the form to the preview
    view as the lead types, and shows what annotators will see."""

    class Media:
        js = ["js/htmx.min.js"]
        css = {"all": ["css/admin-console.css"]}

    def __init__(self) -> None:
        super().__init__(attrs={"rows": 14, "cols": 80})

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> Any:
        attrs = {
            **(attrs or {}),
            "hx-post": reverse("admin:projects_project_preview"),
            "hx-trigger": "input changed delay:300ms, load",
            "hx-target": "#guidelines-preview",
            "hx-swap": "innerHTML",
        }
        textarea = super().render(name, value, attrs, renderer)
        return format_html(
            '{}<div class="guidelines-preview-box"><div class="help">Preview, as annotators '
            'will see it:</div><div id="guidelines-preview" class="guidelines-preview" '
            'aria-live="polite"></div></div>',
            textarea,
        )


class ProjectForm(forms.ModelForm[Project]):
    skip_reasons = LinesField(
        required=False,
        help_text="One reason per line. Annotators pick one when they skip a comparison; "
        "leave it empty to let them skip without a reason.",
    )
    flags = LinesField(
        required=False,
        help_text=f"One flag per line (at most {MAX_FLAGS}): what an annotator may raise on a "
        "comparison beside their judgment, for example “unsafe content” or “factual error”. "
        "Letters, digits, spaces, _ and -.",
    )
    criteria = CriteriaField(
        required=False,
        help_text=f"One criterion per line (at most {MAX_CRITERIA}), as `name: what it means`, "
        "for example `helpfulness: does it do what was asked`. Each is judged on its own, "
        "beside the overall judgment. Pairwise and graded projects only.",
    )

    class Meta:
        model = Project
        fields = ["name", "slug", "guidelines", *AUDITED_SETTINGS_FORM]
        widgets = {"guidelines": GuidelinesWidget()}
        help_texts = {
            "name": "Shown to annotators and in the dataset card.",
            "slug": "Names the project in URLs and in the API; fixed once the project exists.",
            "guidelines": "Markdown, shown to annotators beside every comparison. Each edit "
            "makes a new version; every judgment records the version it was given under.",
            "allow_tie": "Pairwise: annotators may answer “tie”. Graded: the 0 of the scale. "
            "Listwise: responses may share a place.",
            "allow_both_bad": "Pairwise: annotators may answer “both bad”.",
            "overlap": "How many annotators judge each comparison (1-50). Lowering it completes "
            "comparisons at once; raising it reopens them.",
            "lease_seconds": "How long an annotator holds a comparison before it returns to "
            "the pool (at least 10 seconds).",
            "stop_confidence": "Adaptive stopping, from 0.5 to 0.999 (empty = off): a comparison "
            "stops receiving votes once one side leads by enough votes that it is better with "
            "this probability, taking each vote as right 80% of the time: 0.8 stops at a lead of "
            "1 vote, 0.9 at 2, 0.95 at 3, 0.99 at 4, 0.999 at 5 (ties and both bad count for "
            "neither side). The overlap stays the most votes a comparison gets. Pairwise and "
            "graded projects only. Changing it closes or reopens comparisons at once.",
            "gold_rate": "Share of assignments that are gold items, from 0 to 1 (0.05 = 5%). "
            "Gold items come from the import's gold answers.",
            "gold_min_accuracy": "From 0 to 1: below this gold accuracy an annotator stops "
            "receiving work (0 = never), once they answered “gold min answers” gold items.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        rationale, minimum = data.get("rationale"), data.get("rationale_min_length")
        if rationale == RationaleRule.OFF and minimum:
            self.add_error(
                "rationale_min_length",
                "Annotators write no rationale in this project (rule: off): leave it at 0.",
            )
        gold_min, gold_rate = data.get("gold_min_accuracy"), data.get("gold_rate")
        if gold_min and not gold_rate:
            self.add_error(
                "gold_min_accuracy",
                "A minimum gold accuracy needs gold items: set a gold rate above 0 too.",
            )
        project = self.instance
        if project.pk and "scheme" in self.changed_data and project.batches.exists():
            self.add_error(
                "scheme",
                "The project has batches, imported for its scheme: the scheme is fixed now. "
                "Create a new project for another scheme.",
            )
        return data


# The settings whose changes the audit log records, old -> new (guidelines: as a new version).
AUDITED_SETTINGS = ["name", *AUDITED_SETTINGS_FORM]


@admin.register(Project)
class ProjectAdmin(LeadScopedAdmin[Project]):
    """Leads create projects (they become their lead) and change their own; staff all."""

    lead_can_add = True
    lead_can_change = True
    form = ProjectForm
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
        ("Judging", {"fields": JUDGING_SETTINGS}),
        ("Queue", {"fields": QUEUE_SETTINGS}),
        ("Gold items", {"fields": GOLD_SETTINGS}),
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

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "preview/",
            self.admin_site.admin_view(self.preview_view),
            name="projects_project_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """POST guidelines: their HTML, through the renderer the workbench shows them with."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        text = request.POST.get("guidelines", "")
        html = render_guidelines(text) if text.strip() else "<p><em>Nothing to preview.</em></p>"
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Cache-Control"] = "no-store"
        return response

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, MembershipInline):
            kwargs["form_kwargs"] = {**kwargs.get("form_kwargs", {}), "actor": request.user}
        return kwargs

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        user = request.user
        if not change:
            # The service saves it, records it, and makes a lead who creates it its lead.
            project_insert(project=obj, created_by=user)  # type: ignore[arg-type]
            return
        new_guidelines = obj.guidelines
        before: dict[str, Any] = {}
        if change:
            saved = Project.objects.get(pk=obj.pk)
            before = {name: getattr(saved, name) for name in AUDITED_SETTINGS}
            if "guidelines" in form.changed_data:
                # Saved through the service below, which makes the new version.
                obj.guidelines = saved.guidelines
        super().save_model(request, obj, form, change)
        changes = changes_of(before, {name: getattr(obj, name) for name in AUDITED_SETTINGS})
        if changes:
            audit_record(
                actor=user,
                action=AuditAction.PROJECT_SETTINGS,
                project=obj,
                target=obj,
                details=changes,
            )
        if "guidelines" in form.changed_data:
            # The service makes the new version and records it.
            project_guidelines_set(project=obj, text=new_guidelines, by=user)  # type: ignore[arg-type]
        if "audit_rate" in form.changed_data:
            # Comparisons that join the sample and had stopped early reopen (overlap_changed).
            audit_sample_mark(project=obj)
        if {"overlap", "stop_confidence", "audit_rate"} & set(form.changed_data):
            overlap_changed(project=obj)
        version, followed = (
            Project.objects.filter(pk=obj.pk).values_list("policy_version", "policy_followed").get()
        )
        if followed < version:  # a large project: the follow task moves its comparisons
            self.message_user(
                request,
                "The comparisons follow the new queue settings in the background, in short "
                "chunks; the project's dashboard shows how far it is.",
                messages.INFO,
            )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Memberships are added, changed and removed through the services, which check the
        actor's right to and record each change (MembershipFormSet checked them already)."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        project, by = form.instance, request.user
        deleted = {id(member_form) for member_form in formset.deleted_forms}
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for member_form in formset.forms:
            membership = member_form.instance
            old = (
                Membership.objects.select_related("user").filter(pk=membership.pk).first()
                if membership.pk
                else None
            )
            if id(member_form) in deleted:
                if old is not None:
                    membership_remove(project=project, user=old.user, by=by)
                    formset.deleted_objects.append(old)
                continue
            if not member_form.has_changed():
                continue
            if old is not None and old.user_id != membership.user_id:
                membership_remove(project=project, user=old.user, by=by)
                formset.deleted_objects.append(old)
                old = None
            saved = membership_add(
                project=project, user=membership.user, role=membership.role, by=by
            )
            if old is None:
                formset.new_objects.append(saved)
            else:
                formset.changed_objects.append((saved, member_form.changed_data))
