from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from annotate.admin_site import LeadScopedAdmin
from annotate.broker import BrokerUnavailable
from annotate.errors import ApplicationError
from annotate.jobs import ACTIVE, RESUMABLE
from apps.batches.models import Batch
from apps.endpoints.models import ModelEndpoint
from apps.generation.models import GenerationJob, JobStatus
from apps.generation.services import (
    NO_JOBS_IN,
    GenerationInvalid,
    generation_cancel,
    generation_problems,
    generation_resume,
    generation_start,
    job_failures_by_prompt,
)
from apps.projects.selectors import projects_led_by

SETTINGS = [
    "batch",
    "endpoints",
    "samples",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "system_prompt",
    "pairing",
    "pairs_per_prompt",
]


class GenerationJobForm(forms.ModelForm[GenerationJob]):
    """Starting a job: the service's problems show next to their fields."""

    class Meta:
        model = GenerationJob
        fields = SETTINGS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        batch, endpoints = data.get("batch"), list(data.get("endpoints") or [])
        if batch is None or self.errors:
            return data
        problems = generation_problems(
            batch=batch,
            endpoints=endpoints,
            samples=data.get("samples") or 0,
            pairing=data.get("pairing") or "",
            pairs_per_prompt=data.get("pairs_per_prompt"),
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            max_tokens=data.get("max_tokens"),
        )
        for field, message in problems.items():
            self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(GenerationJob)
class GenerationJobAdmin(LeadScopedAdmin[GenerationJob]):
    """Leads start jobs for the batches of the projects they lead, follow them, cancel and
    resume them; the rules and the audit are apps.generation.services'. A job is never edited:
    a new setting is a new job (what a prompt has already is not asked again)."""

    project_field = "batch__project"
    form = GenerationJobForm
    lead_can_add = True
    list_display = [
        "id",
        "batch",
        "status",
        "progress",
        "requests_failed",
        "comparisons_made",
        "tokens",
        "cost",
        "created_at",
    ]
    list_filter = ["status", ("batch", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["batch__project"]
    readonly_fields = [
        "status",
        "note",
        "progress",
        "requests_failed",
        "prompts_progress",
        "comparisons_made",
        "tokens",
        "cost",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
        "failures",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationJob]:
        return super().get_queryset(request).select_related("batch__project")

    def get_fields(self, request: HttpRequest, obj: GenerationJob | None = None) -> Any:
        if obj is None:
            return SETTINGS
        return [*SETTINGS, *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: GenerationJob | None = None) -> Any:
        if obj is None:
            return []
        return [*SETTINGS, *self.readonly_fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a job is never edited; its page shows it, with cancel and resume

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its candidates and comparisons stay with the batch

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field: ModelChoiceField[Any] | None = super().formfield_for_foreignkey(
            db_field, request, **kwargs
        )
        if db_field.name == "batch" and field is not None:
            batches = Batch.objects.exclude(status__in=NO_JOBS_IN).select_related("project")
            if not request.user.is_staff:
                batches = batches.filter(project__in=projects_led_by(request.user))
            field.queryset = batches
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field: ModelMultipleChoiceField[Any] | None = super().formfield_for_manytomany(
            db_field, request, **kwargs
        )
        if db_field.name == "endpoints" and field is not None:
            endpoints = ModelEndpoint.objects.select_related("project")
            if not request.user.is_staff:
                endpoints = endpoints.filter(
                    Q(project__in=projects_led_by(request.user)) | Q(project__isnull=True)
                )
            field.queryset = endpoints
            field.help_text = "The project's own endpoints, or shared ones."
        return field

    def save_model(self, request: HttpRequest, obj: GenerationJob, form: Any, change: bool) -> None:
        data = form.cleaned_data
        job = generation_start(
            batch=data["batch"],
            endpoints=list(data["endpoints"]),
            samples=data["samples"],
            by=request.user,
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            max_tokens=data.get("max_tokens"),
            seed=data.get("seed"),
            system_prompt=data.get("system_prompt") or "",
            pairing=data["pairing"],
            pairs_per_prompt=data.get("pairs_per_prompt"),
        )
        obj.pk = job.pk
        obj.__dict__.update({k: v for k, v in job.__dict__.items() if not k.startswith("_")})

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # generation_start set the endpoints

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().add_view(request, *args, **kwargs)
        except (GenerationInvalid, BrokerUnavailable, ApplicationError) as error:
            # A race with another start, or the broker gone: nothing was created.
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_add(self, request: HttpRequest, obj: GenerationJob, *args: Any) -> HttpResponse:
        self.message_user(request, f"Generation job {obj.pk} started.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:generation_generationjob_change", args=[obj.pk]))

    @admin.display(description="requests")
    def progress(self, job: GenerationJob) -> str:
        percent = 100 * job.requests_done // job.requests_total if job.requests_total else 0
        return f"{job.requests_done} of {job.requests_total} ({percent}%)"

    @admin.display(description="prompts settled")
    def prompts_progress(self, job: GenerationJob) -> str:
        return f"{job.prompts_done} of {job.prompts_total}"

    @admin.display(description="tokens in / out")
    def tokens(self, job: GenerationJob) -> str:
        return f"{job.prompt_tokens:,} / {job.completion_tokens:,}"

    @admin.display(description="failed requests, by prompt")
    def failures(self, job: GenerationJob) -> str:
        rows = job_failures_by_prompt(job)
        if not rows:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{}: {}</li>",
                (
                    (
                        row["prompt"],
                        "; ".join(
                            f"{f['endpoint']} sample {f['sample']}: {f['error']} {f['detail']}"
                            for f in row["failures"]
                        ),
                    )
                    for row in rows
                ),
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            *(
                path(
                    f"<int:job_id>/{action}/",
                    self.admin_site.admin_view(self.action_view),
                    {"action": action},
                    name=f"generation_generationjob_{action}",
                )
                for action in ("cancel", "resume")
            ),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, job_id: int, action: str) -> HttpResponse:
        """POST from the job's page: cancel or resume."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self.get_queryset(request).filter(pk=job_id).first()
        if job is None:
            raise PermissionDenied
        try:
            if action == "cancel":
                generation_cancel(job=job, by=request.user)
                self.message_user(request, f"Generation job {job.pk} cancelled.", messages.SUCCESS)
            else:
                generation_resume(job=job, by=request.user)
                self.message_user(request, f"Generation job {job.pk} resumed.", messages.SUCCESS)
        except ApplicationError as error:
            self.message_user(request, str(error), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:generation_generationjob_change", args=[job.pk]))

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        job = context.get("original")
        if job is not None:
            context["can_cancel"] = job.status in ACTIVE
            context["can_resume"] = job.status in RESUMABLE
            context["is_running"] = job.status == JobStatus.RUNNING
        return super().render_change_form(request, context, *args, **kwargs)
