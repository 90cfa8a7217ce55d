from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet, Sum
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from annotate.admin_site import LeadScopedAdmin, ReadOnlyAdmin
from annotate.broker import BrokerUnavailable
from annotate.errors import ApplicationError
from apps.batches.forms import BatchUploadForm
from apps.batches.honeypots import batch_honeypot_count, honeypots_of_batch
from apps.batches.import_format import ImportFormatError
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.selectors import batch_awaiting_candidates, prompts_awaiting_candidates
from apps.batches.services import (
    BATCH_ACTIONS,
    DELETABLE_STATUSES,
    SETTABLE_STATUSES,
    batch_action,
    batch_delete,
    batch_import,
    batch_import_cancel,
    batch_import_progress,
    batch_priority_set,
    batch_status_set,
)
from apps.exports.formats import formats_for
from apps.generation.models import GenerationJob
from apps.generation.services import batch_usage
from apps.judging.queue import batch_leases_reclaim
from apps.projects.selectors import projects_led_by


class BatchActionForm(helpers.ActionForm):
    """The changelist's action bar, with the priority that "Set the priority" sets."""

    priority = forms.CharField(
        required=False,
        max_length=12,
        help_text="For “Set the priority”: higher batches are served first.",
    )


class BatchForm(forms.ModelForm[Batch]):
    """Status is limited to what a lead may set; importing and failed belong to the import."""

    class Meta:
        model = Batch
        fields = ["name", "status", "priority", "annotator_cap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.status not in SETTABLE_STATUSES:
            self.fields["status"].disabled = True
        else:
            self.fields["status"].choices = [  # type: ignore[attr-defined]
                (value, label) for value, label in BatchStatus.choices if value in SETTABLE_STATUSES
            ]
            self.fields["status"].help_text = (
                "Only active batches hand out comparisons. Paused: none until resumed. "
                "Done: closed for good (it can be activated again)."
            )


ACTION_LABELS = {
    "activate": "Activate",
    "pause": "Pause",
    "resume": "Resume",
    "close": "Close",
}


@admin.register(Batch)
class BatchAdmin(LeadScopedAdmin[Batch]):
    lead_can_add = True
    lead_can_change = True
    form = BatchForm
    action_form = BatchActionForm
    actions = [
        "activate_batches",
        "pause_batches",
        "resume_batches",
        "close_batches",
        "set_priority",
        "reclaim_expired_leases",
        "cancel_imports",
        "delete_batches",
    ]
    list_display = [
        "__str__",
        "project",
        "status",
        "priority",
        "prompt_count",
        "comparison_count",
        "progress",
        "skips",
        "created_at",
    ]
    list_filter = ["status", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name"]
    fields = [
        "project",
        "name",
        "status",
        "priority",
        "annotator_cap",
        "prompt_count",
        "comparison_count",
        "honeypots",
        "candidates_optional",
        "awaiting_candidates",
        "generation",
        "errors",
        "created_by",
        "created_at",
        "finished_at",
    ]
    readonly_fields = [
        "project",
        "prompt_count",
        "comparison_count",
        "honeypots",
        "candidates_optional",
        "awaiting_candidates",
        "generation",
        "errors",
        "created_by",
        "created_at",
        "finished_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        queryset: QuerySet[Batch] = (
            super()
            .get_queryset(request)
            .select_related("project")
            .annotate(
                complete=Count("comparisons", filter=Q(comparisons__complete=True)),
                # Gold items are never complete (queue_order): counted, they would keep a batch
                # with gold below 100% for ever.
                ordinary=Count("comparisons", filter=Q(comparisons__is_gold=False)),
                skipped=Sum("comparisons__skip_count"),
                honeypot_count=batch_honeypot_count(),
                awaiting_count=batch_awaiting_candidates(),
            )
        )
        return queryset

    @admin.display(description="honeypots (generated gold items)")
    def honeypots(self, batch: Batch) -> int:
        counted = getattr(batch, "honeypot_count", None)
        return honeypots_of_batch(batch.pk) if counted is None else int(counted)

    @admin.display(description="generated responses")
    def generation(self, batch: Batch) -> str:
        """The batch's generation jobs and what its generated candidates used, with links."""
        jobs = GenerationJob.objects.filter(batch=batch)
        latest = jobs.first()
        usage = batch_usage(batch)
        start = reverse("admin:generation_generationjob_add") + "?" + urlencode({"batch": batch.pk})
        if latest is None:
            return format_html('none yet. <a href="{}">Generate responses</a>', start)
        listing = (
            reverse("admin:generation_generationjob_changelist")
            + "?"
            + urlencode({"batch__id__exact": batch.pk})
        )
        return format_html(
            "{} candidates, {} tokens in, {} out, estimated cost {}{}. "
            '<a href="{}">{} job(s)</a>, the latest {}. <a href="{}">Generate more</a>',
            usage["candidates"],
            f"{usage['prompt_tokens']:,}",
            f"{usage['completion_tokens']:,}",
            usage["cost"],
            f" ({usage['unpriced']} without prices)" if usage["unpriced"] else "",
            listing,
            jobs.count(),
            latest.get_status_display().lower(),
            start,
        )

    @admin.display(description="prompts awaiting candidates")
    def awaiting_candidates(self, batch: Batch) -> int:
        """Prompts with fewer candidates than a comparison needs (imported with candidates
        optional): no comparison until their responses are generated."""
        counted = getattr(batch, "awaiting_count", None)
        return prompts_awaiting_candidates(batch) if counted is None else int(counted)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Not Django's delete (it would skip the rules and the audit log): the "Delete" action
        # and button call batch_delete, for staff and leads alike.
        return False

    @admin.display(description="complete (gold left out)")
    def progress(self, batch: Batch) -> str:
        """The ordinary comparisons with all their votes, of the batch's ordinary comparisons."""
        if batch.status == BatchStatus.IMPORTING:
            state = batch_import_progress(batch)
            return format_html(
                '<progress max="100" value="{}"></progress> importing: {}',
                state["percent"],
                _import_state(state),
            )
        complete = getattr(batch, "complete", 0)
        total = getattr(batch, "ordinary", 0)
        percent = round(100 * complete / total) if total else 0
        return format_html(
            '<progress max="100" value="{}"></progress> {} / {} ({}%)',
            percent,
            complete,
            total,
            percent,
        )

    @admin.display(description="skips")
    def skips(self, batch: Batch) -> int:
        return getattr(batch, "skipped", None) or 0

    def save_model(self, request: HttpRequest, obj: Batch, form: Any, change: bool) -> None:
        # Status and priority go through the services, which lock the row and keep the audit log.
        status, priority = obj.status, obj.priority
        if change:
            saved = Batch.objects.get(pk=obj.pk)
            obj.status, obj.priority = saved.status, saved.priority
        super().save_model(request, obj, form, change)
        if change and "status" in form.changed_data:
            try:
                batch_status_set(batch=obj, status=status, by=request.user)
            except ApplicationError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if change and "priority" in form.changed_data:
            batch_priority_set(batch=obj, priority=priority, by=request.user)

    # The changelist's actions. Each batch is checked against the lead's rights again.

    def _act(self, request: HttpRequest, queryset: QuerySet[Batch], action: str) -> None:
        done, refused = [], []
        for batch in queryset:
            if not self.has_change_permission(request, batch):
                refused.append(f"{batch}: not yours")
                continue
            try:
                batch_action(batch=batch, action=action, by=request.user)
            except ApplicationError as exc:
                refused.append(str(exc))
            else:
                done.append(str(batch))
        if done:
            self.message_user(
                request, f"{ACTION_LABELS[action]}: {', '.join(done)}.", messages.SUCCESS
            )
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Activate the selected batches")
    def activate_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "activate")

    @admin.action(description="Pause the selected batches")
    def pause_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "pause")

    @admin.action(description="Resume the selected batches")
    def resume_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "resume")

    @admin.action(description="Close the selected batches")
    def close_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "close")

    @admin.action(description="Set the priority of the selected batches")
    def set_priority(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        raw = request.POST.get("priority", "").strip()
        try:
            priority = int(raw)
        except ValueError:
            self.message_user(
                request,
                "The priority must be a whole number: give it beside the action.",
                messages.ERROR,
            )
            return
        changed = 0
        for batch in queryset:
            if self.has_change_permission(request, batch):
                changed += batch_priority_set(batch=batch, priority=priority, by=request.user)
        self.message_user(
            request, f"Priority {priority} set on {changed} batch(es).", messages.SUCCESS
        )

    @admin.action(description="Reclaim expired leases now (the batches' projects)")
    def reclaim_expired_leases(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        total, seen = 0, set()
        for batch in queryset:
            if batch.project_id in seen or not self.has_change_permission(request, batch):
                continue
            seen.add(batch.project_id)
            total += batch_leases_reclaim(batch=batch, by=request.user)
        self.message_user(request, f"Reclaimed {total} expired lease(s).", messages.SUCCESS)

    def _each(self, request: HttpRequest, queryset: QuerySet[Batch], act: Any, label: str) -> None:
        done, refused = [], []
        for batch in queryset:
            if not self.has_change_permission(request, batch):
                refused.append(f"{batch}: not yours")
                continue
            name = str(batch)
            try:
                act(batch=batch, by=request.user)
            except ApplicationError as exc:
                refused.append(str(exc))
            else:
                done.append(name)
        if done:
            self.message_user(request, f"{label}: {', '.join(done)}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Cancel the selected imports")
    def cancel_imports(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._each(request, queryset, batch_import_cancel, "Cancelled")

    @admin.action(description="Delete the selected batches (none may hold judgments)")
    def delete_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._each(request, queryset, batch_delete, "Deleted")

    # Custom views: upload, the change page's buttons, the import's progress.

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("upload/", view(self.upload_view), name="batches_batch_upload"),
            path(
                "<int:batch_id>/act/<str:action>/",
                view(self.act_view),
                name="batches_batch_act",
            ),
            path(
                "<int:batch_id>/progress/",
                view(self.progress_view),
                name="batches_batch_progress",
            ),
            *super().get_urls(),
        ]

    def _batch_or_none(self, request: HttpRequest, batch_id: int) -> Batch | None:
        return self.get_queryset(request).filter(pk=batch_id).first()

    def act_view(self, request: HttpRequest, batch_id: int, action: str) -> HttpResponse:
        """POST from a button on the change page: one action on one batch."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = self._batch_or_none(request, batch_id)
        if batch is None or not self.has_change_permission(request, batch):
            raise PermissionDenied
        change_url = reverse("admin:batches_batch_change", args=[batch.pk])
        if action in BATCH_ACTIONS:
            try:
                batch_action(batch=batch, action=action, by=request.user)
            except ApplicationError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{ACTION_LABELS[action]}: {batch} is now {batch.status}.",
                    messages.SUCCESS,
                )
        elif action == "priority":
            try:
                priority = int(request.POST.get("priority", ""))
            except ValueError:
                self.message_user(request, "The priority must be a whole number.", messages.ERROR)
            else:
                batch_priority_set(batch=batch, priority=priority, by=request.user)
                self.message_user(request, f"Priority of {batch} set to {priority}.")
        elif action == "cancel":
            try:
                batch_import_cancel(batch=batch, by=request.user)
            except ApplicationError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Cancelled the import of {batch}.", messages.SUCCESS)
        elif action == "delete" and request.POST.get("confirm") != "yes":
            self.message_user(
                request, "Tick the box to confirm that the batch is to be deleted.", messages.ERROR
            )
        elif action == "delete":
            name = str(batch)
            try:
                batch_delete(batch=batch, by=request.user)
            except ApplicationError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Deleted {name}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:batches_batch_changelist"))
        elif action == "reclaim":
            total = batch_leases_reclaim(batch=batch, by=request.user)
            self.message_user(
                request, f"Reclaimed {total} expired lease(s) in {batch.project}.", messages.SUCCESS
            )
        else:
            self.message_user(request, f"Unknown action {action!r}.", messages.ERROR)
        return HttpResponseRedirect(change_url)

    def progress_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        """The import's progress as a small HTML fragment, which HTMX polls while importing."""
        batch = self._batch_or_none(request, batch_id)
        if batch is None:
            raise Http404("No such batch.")
        progress = batch_import_progress(batch)
        response = TemplateResponse(
            request,
            "admin/batches/progress.html",
            {"batch": batch, "progress": progress, "polling": request.headers.get("HX-Request")},
        )
        if request.headers.get("HX-Request") and progress["phase"] == "finished":
            # The import ended while the page watched: reload it to show the final state.
            response["HX-Refresh"] = "true"
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        batch = self._batch_or_none(request, int(object_id)) if object_id.isdigit() else None
        extra = dict(extra_context or {})
        if batch is not None:
            extra.update(
                batch_actions=[
                    (action, ACTION_LABELS[action])
                    for action, (allowed, _) in BATCH_ACTIONS.items()
                    if batch.status in allowed
                ],
                can_act=self.has_change_permission(request, batch),
                can_delete=batch.status in DELETABLE_STATUSES,
                progress=batch_import_progress(batch),
                export_links=_export_links(batch),
            )
        return super().change_view(request, object_id, form_url, extra)

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return redirect("admin:batches_batch_upload")

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return redirect("admin:index")
        projects = projects_led_by(request.user)
        errors: list[dict[str, Any]] = []
        unavailable = False
        form = BatchUploadForm(request.POST or None, request.FILES or None, projects=projects)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                batch = batch_import(
                    project=form.cleaned_data["project"],
                    source=upload,
                    size=upload.size,
                    name=form.cleaned_data["name"] or upload.name,
                    created_by=request.user,  # type: ignore[arg-type]
                    candidates_optional=form.cleaned_data["candidates_optional"],
                )
            except ImportFormatError as exc:
                errors = [error.as_dict() for error in exc.errors]
                if exc.total > len(errors):
                    errors.append(
                        {"line": None, "error": f"... and {exc.total - len(errors)} more"}
                    )
            except BrokerUnavailable as exc:
                errors = [{"line": None, "error": str(exc)}]
                unavailable = True
            else:
                batch.refresh_from_db()
                if batch.status == BatchStatus.FAILED:
                    errors = batch.errors
                else:
                    if batch.status == BatchStatus.IMPORTING:
                        text = f"{batch} is importing in the background; its progress is below."
                    else:
                        text = (
                            f"Imported {batch}: {batch.prompt_count} prompts, "
                            f"{batch.comparison_count} comparisons "
                            f"({honeypots_of_batch(batch.pk)} of them honeypots)."
                        )
                        if batch.candidates_optional:
                            text += (
                                f" {prompts_awaiting_candidates(batch)} prompt(s) await candidates."
                            )
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:batches_batch_change", args=[batch.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a batch",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        # 503 while the task queue is down: the form and the message say to try again.
        return TemplateResponse(
            request, "admin/batches/upload.html", context, status=503 if unavailable else None
        )


def _import_state(progress: dict[str, Any]) -> str:
    """The import's state in a few words, for the batch list."""
    if not progress["running"]:
        if progress["attempt"]:
            return f"re-queued after attempt {progress['attempt']}, waiting for a worker"
        return "waiting for a worker"
    return f"attempt {progress['attempt']} of {progress['max_attempts']}, {progress['phase']}"


def _export_links(batch: Batch) -> list[tuple[str, str]]:
    """(label, URL) of each export of this batch: every format that applies to its project's
    scheme (`formats_for`), then the dataset card."""
    base = reverse("api-export", kwargs={"slug": batch.project.slug})
    return [
        (name, f"{base}?{urlencode({'format': name, 'batch': batch.pk})}")
        for name in [*formats_for(batch.project.scheme), "card"]
    ]


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin[Prompt]):
    list_display = ["external_id", "project", "batch"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id"]
    list_select_related = ["project", "batch"]


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin[Candidate]):
    project_field = "prompt__project"
    list_display = [
        "external_id",
        "prompt",
        "model",
        "endpoint",
        "sample_index",
        "finish_reason",
        "completion_tokens",
        "latency_ms",
        "cost",
    ]
    list_filter = ["model", "finish_reason"]
    search_fields = ["external_id", "model", "prompt__external_id"]
    list_select_related = ["prompt", "endpoint"]


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin[Comparison]):
    list_display = [
        "id",
        "project",
        "batch",
        "prompt",
        "judgment_count",
        "lease_count",
        "skip_count",
        "complete",
        "is_gold",
        "is_audit",
    ]
    list_filter = [
        ("project", admin.RelatedOnlyFieldListFilter),
        "batch__status",
        "complete",
        "is_gold",
        "is_audit",
    ]
    search_fields = ["prompt__external_id"]
    list_select_related = ["project", "batch", "prompt"]
