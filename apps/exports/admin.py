from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from rest_framework.exceptions import ValidationError

from annotate.admin_site import ReadOnlyAdmin
from annotate.errors import ApplicationError
from apps.batches.models import Batch
from apps.exports.formats import formats_for
from apps.exports.jobs import NotCancellable, export_job_cancel, export_job_request
from apps.exports.models import ExportJob, ExportStatus, FileFormat
from apps.exports.options import PARAMETERS, PROMPT_FORMS
from apps.exports.selectors import AGGREGATES
from apps.projects.models import Project
from apps.projects.selectors import is_lead_anywhere, project_for_lead, projects_led_by

# While a job is queued or running, its page reloads itself this often (a meta refresh: no script).
REFRESH_SECONDS = 3


def _blank(*choices: str) -> list[tuple[str, str]]:
    """A choice field's choices with a first, empty one: the format's default."""
    return [("", "(the format's default)"), *((choice, choice) for choice in choices)]


class ProjectChoiceForm(forms.Form):
    """Step one: which project (only those the user may export)."""

    project = forms.ModelChoiceField(
        queryset=Project.objects.none(), to_field_name="slug", empty_label=None
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_led_by(user).order_by("slug")  # type: ignore[attr-defined]


class ExportJobForm(forms.Form):
    """Step two: the format (only those that apply to the project's scheme) and its options.

    An option left empty is the format's default; one the chosen format does not take is an
    error naming it, as the API answers (the service validates every value).
    """

    format = forms.ChoiceField()
    file_format = forms.ChoiceField(
        choices=FileFormat.choices, initial=FileFormat.JSONL, label="File format"
    )
    batch = forms.ModelChoiceField(
        queryset=Batch.objects.none(), required=False, empty_label="(all batches)"
    )
    aggregate = forms.ChoiceField(
        choices=_blank(*AGGREGATES),
        required=False,
        help_text="Pairwise formats (trl, trl-implicit, kto, hh-rlhf, openai): how votes name "
        "the chosen response; majority by default.",
    )
    prompt_form = forms.ChoiceField(
        choices=_blank(*PROMPT_FORMS),
        required=False,
        label="Prompt form",
        help_text="trl, trl-implicit, kto, listwise: message lists (conversational, the default) "
        "or text.",
    )
    min_votes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        label="Minimum votes",
        help_text="Pairwise formats and listwise: only comparisons with at least this many votes.",
    )
    include_ties = forms.ChoiceField(
        choices=_blank("true", "false"),
        required=False,
        label="Include ties",
        help_text="arena and judgments: keep the votes for a tie and for both bad (true).",
    )
    include_gold = forms.ChoiceField(
        choices=_blank("false", "true"),
        required=False,
        label="Include gold",
        help_text="Pairwise formats, arena and judgments: include gold comparisons (false).",
    )
    both_bad = forms.ChoiceField(
        choices=_blank("exclude", "include"),
        required=False,
        label="Both bad",
        help_text="kto only: both responses of a both-bad majority as rejected rows (exclude).",
    )
    sources = forms.ChoiceField(
        choices=_blank("human", "ai", "all"),
        required=False,
        label="Sources",
        help_text="Every format: whose votes, people's (human, the default), the AI judges' "
        "(ai) or both (all).",
    )
    split = forms.ChoiceField(
        choices=_blank("train", "test"),
        required=False,
        help_text="Every format: only the prompts of one half (test_fraction 0.1).",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        applicable = formats_for(project.scheme)
        self.fields["format"].choices = [(name, name) for name in applicable]  # type: ignore[attr-defined]
        self.fields["format"].initial = applicable[0]
        self.fields[
            "format"
        ].help_text = (
            f"The formats that apply to a {project.scheme} project; see the README's Exports."
        )
        self.fields["batch"].queryset = Batch.objects.filter(project=project).order_by("id")  # type: ignore[attr-defined]

    def job_data(self) -> dict[str, Any]:
        """The body the service takes (as the API's POST): the format and the options set."""
        data: dict[str, Any] = {
            "format": self.cleaned_data["format"],
            "file_format": self.cleaned_data["file_format"],
        }
        # The export's parameters this form offers (options.PARAMETERS: one list for every door).
        for name in PARAMETERS:
            value = self.cleaned_data.get(name)
            if isinstance(value, Batch):
                value = value.pk
            if value not in (None, ""):
                data[name] = value
        return data


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin[ExportJob]):
    """Background exports: started here ("Add") or through the API, run by the workers; leads
    see their projects' jobs, watch them, download what is done and cancel what is queued or
    running."""

    # Narrow: the admin's sidebar and filters leave the list little room at 1280 px.
    list_display = ["id", "project_slug", "what", "status", "progress", "files", "created_at"]
    list_filter = ["status", "file_format", "format"]
    search_fields = ["project__slug"]
    list_select_related = ["project"]
    readonly_fields = ["files", *(field.name for field in ExportJob._meta.fields)]
    actions = ["cancel_jobs"]
    change_form_template = "admin/exports/exportjob/change_form.html"
    change_list_template = "admin/exports/exportjob/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Whom the service accepts: staff and leads, for the projects they lead (checked again
        # for the chosen project by project_for_lead, as the API does).
        user = request.user
        return bool(user.is_staff or is_lead_anywhere(user))

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Starts a background export through the API's service (`export_job_request`): the
        same validation, permission rule (project_for_lead) and audit event."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        user: User = request.user  # type: ignore[assignment]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Start a background export",
            "refresh_seconds": REFRESH_SECONDS,
        }
        slug = request.POST.get("project") or request.GET.get("project")
        if not slug:
            choice = ProjectChoiceForm(user=user)
            led = choice.fields["project"].queryset  # type: ignore[attr-defined]
            if led.count() != 1:
                context["choice_form"] = choice
                return render(request, "admin/exports/exportjob/start.html", context)
            slug = led.get().slug
        project = project_for_lead(user=user, slug=str(slug))  # 404 for another's project
        form = ExportJobForm(request.POST if request.method == "POST" else None, project=project)
        if request.method == "POST" and form.is_valid():
            try:
                job = export_job_request(project=project, user=user, data=form.job_data())
            except ValidationError as exc:
                _form_errors(form, exc)
            except ApplicationError as exc:  # the task queue is down: nothing was created
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Export {job.pk} ({job.format}, {job.file_format}) of {project.slug} is "
                    f"{job.status}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:exports_exportjob_change", args=[job.pk])
                )
        context.update(project=project, form=form)
        return render(request, "admin/exports/exportjob/start.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self.get_queryset(request).filter(pk=object_id).first()
        running = job is not None and job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)
        extra = {
            **(extra_context or {}),
            "auto_refresh": REFRESH_SECONDS if running else None,
            "job_running": running,
            "job_files": self.files(job) if job is not None else "",
        }
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        running = (
            self.get_queryset(request)
            .filter(status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING])
            .exists()
        )
        extra = {**(extra_context or {}), "jobs_running": running}
        return super().changelist_view(request, extra)

    @admin.display(description="Project", ordering="project__slug")
    def project_slug(self, job: ExportJob) -> str:
        return job.project.slug

    @admin.display(description="Export", ordering="format")
    def what(self, job: ExportJob) -> str:
        return f"{job.format} ({job.get_file_format_display()})"

    @admin.display(description="Rows")
    def progress(self, job: ExportJob) -> str:
        if job.rows_total is None or job.status == ExportStatus.DONE:
            return f"{job.rows_written:,}"
        return f"{job.rows_written:,} of about {job.rows_total:,}"

    @admin.display(description="Files")
    def files(self, job: ExportJob) -> str:
        """Links to the API's download endpoints: the same permission check (project_for_lead)
        and the same answers (409 not done, 410 expired) as for an API client."""
        if job.status != ExportStatus.DONE:
            return "-"
        kwargs = {"slug": job.project.slug, "job_id": job.pk}
        links = [
            (reverse("api-export-job-download", kwargs=kwargs), job.file_format),
            (reverse("api-export-job-card", kwargs=kwargs), "card"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    @admin.action(description="Cancel the selected exports (queued or running)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for job in queryset:
            try:
                export_job_cancel(job=job, user=request.user)  # type: ignore[arg-type]
            except NotCancellable as exc:
                self.message_user(
                    request,
                    format_html(
                        "Export {} is {}: only a queued or running export can be cancelled.",
                        job.pk,
                        exc.job_status,
                    ),
                    messages.WARNING,
                )
            else:
                self.message_user(request, f"Cancelled export {job.pk}.", messages.SUCCESS)


def _form_errors(form: forms.Form, exc: ValidationError) -> None:
    """The service's 400 (a dict of parameter: messages) as the form's errors, each on its
    field where the form has one."""
    detail = exc.detail if isinstance(exc.detail, dict) else {None: exc.detail}
    for name, errors in detail.items():
        field = name if name in form.fields else None
        for error in errors if isinstance(errors, list) else [errors]:
            text = str(error) if field else f"{name}: {error}" if name else str(error)
            form.add_error(field, text)
