from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse

from annotate.admin_site import LeadScopedAdmin, ReadOnlyAdmin
from annotate.errors import ApplicationError
from annotate.jobs import ACTIVE, RESUMABLE
from apps.batches.models import Batch, BatchStatus
from apps.endpoints.models import ModelEndpoint
from apps.judges.models import Judge, JudgeJob, JudgeJobStatus, Verdict
from apps.judges.prompts import PAIRWISE
from apps.judges.services import (
    judge_problems,
    judge_save,
    judging_cancel,
    judging_resume,
    judging_start,
)
from apps.projects.selectors import projects_led_by

JUDGE_FIELDS = [
    "project",
    "name",
    "endpoint",
    "system_prompt",
    "user_prompt",
    "disagreement",
    "temperature",
    "max_tokens",
    "counts_toward_overlap",
    "people_first_where_unsure",
]


class JudgeForm(forms.ModelForm[Judge]):
    class Meta:
        model = Judge
        fields = JUDGE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["system_prompt"].help_text = (
            "Empty: the documented default for the project's scheme, in the style of "
            "MT-Bench's pairwise judge (impartial, position and length do not count, a strict "
            f"verdict token at the end). The pairwise default begins: {PAIRWISE.system[:160]}..."
        )
        self.fields["user_prompt"].help_text = (
            "Empty: the default. Placeholders: {question}, {answer_a}, {answer_b}, "
            "{guidelines}, {criteria} and {verdict_format} (required: the tokens the project "
            "accepts). Each change gives a new version, recorded on every verdict."
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or not data.get("project") or not data.get("endpoint"):
            return data
        judge = self.instance
        for name in JUDGE_FIELDS:
            if name in data:
                setattr(judge, name, data[name])
        for field, message in judge_problems(judge).items():
            self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(Judge)
class JudgeAdmin(LeadScopedAdmin[Judge]):
    """Leads add and change the AI judges of the projects they lead; saving goes through
    apps.judges.services (the rules, the account, the version and the audit)."""

    form = JudgeForm
    lead_can_add = True
    lead_can_change = True
    list_display = ["name", "project", "endpoint", "template_version", "counts_toward_overlap"]
    list_filter = ["project"]
    readonly_fields = ["template_version", "account", "created_by", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Judge]:
        return super().get_queryset(request).select_related("project", "endpoint")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its judgments stay, and name it

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A judge stays in the project it was made for (its account and votes are there).
        return [*self.readonly_fields, *(["project"] if obj is not None else [])]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "project" and not request.user.is_staff:
            kwargs["queryset"] = projects_led_by(request.user)
        if db_field.name == "endpoint" and not request.user.is_staff:
            kwargs["queryset"] = ModelEndpoint.objects.filter(
                Q(project__in=projects_led_by(request.user)) | Q(project__isnull=True)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Judge, form: Any, change: bool) -> None:
        judge_save(obj, by=request.user)


class JudgeJobForm(forms.ModelForm[JudgeJob]):
    class Meta:
        model = JudgeJob
        fields = ["judge", "batch"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        judge, batch = data.get("judge"), data.get("batch")
        if judge is not None and batch is not None and batch.project_id != judge.project_id:
            self.add_error("batch", "Choose a batch of the judge's project.")
        return data


@admin.register(JudgeJob)
class JudgeJobAdmin(LeadScopedAdmin[JudgeJob]):
    """Start a judge over a batch, follow it, cancel and resume it."""

    project_field = "judge__project"
    form = JudgeJobForm
    lead_can_add = True
    list_display = [
        "id",
        "judge",
        "batch",
        "status",
        "comparisons_done",
        "comparisons_failed",
        "inconsistent",
        "cost",
        "created_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "note",
        "comparisons_total",
        "comparisons_done",
        "comparisons_failed",
        "inconsistent",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[JudgeJob]:
        return super().get_queryset(request).select_related("judge__project", "batch")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["judge", "batch"] if obj is None else ["judge", "batch", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else ["judge", "batch", *self.readonly_fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        led = None if request.user.is_staff else projects_led_by(request.user)
        if db_field.name == "judge" and led is not None:
            kwargs["queryset"] = Judge.objects.filter(project__in=led)
        if db_field.name == "batch":
            batches = Batch.objects.exclude(
                status__in=[BatchStatus.IMPORTING, BatchStatus.FAILED, BatchStatus.CANCELLED]
            )
            kwargs["queryset"] = batches if led is None else batches.filter(project__in=led)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: JudgeJob, form: Any, change: bool) -> None:
        job = judging_start(
            judge=form.cleaned_data["judge"], batch=form.cleaned_data["batch"], by=request.user
        )
        obj.pk = job.pk
        obj.__dict__.update({k: v for k, v in job.__dict__.items() if not k.startswith("_")})

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().add_view(request, *args, **kwargs)
        except ApplicationError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_add(self, request: HttpRequest, obj: JudgeJob, *args: Any) -> HttpResponse:
        self.message_user(request, f"Judging job {obj.pk} started.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:judges_judgejob_change", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        return [
            *(
                path(
                    f"<int:job_id>/{action}/",
                    self.admin_site.admin_view(self.action_view),
                    {"action": action},
                    name=f"judges_judgejob_{action}",
                )
                for action in ("cancel", "resume")
            ),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, job_id: int, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self.get_queryset(request).filter(pk=job_id).first()
        if job is None:
            return HttpResponseRedirect(reverse("admin:judges_judgejob_changelist"))
        try:
            if action == "cancel":
                judging_cancel(job=job, by=request.user)
            else:
                judging_resume(job=job, by=request.user)
            self.message_user(request, f"Judging job {job.pk}: {action} done.", messages.SUCCESS)
        except ApplicationError as error:
            self.message_user(request, str(error), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:judges_judgejob_change", args=[job.pk]))

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        job = context.get("original")
        if job is not None:
            context["can_cancel"] = job.status in ACTIVE
            context["can_resume"] = job.status in RESUMABLE
            context["is_running"] = job.status == JudgeJobStatus.RUNNING
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin[Verdict]):
    """What each judge answered, both orders, raw and parsed: for leads to read, never to edit."""

    project_field = "judge__project"
    list_display = ["id", "judge", "comparison", "consistent", "failure", "template_version"]
    list_filter = ["judge", "consistent", "failure"]
    list_select_related = ["judge"]
