"""Background exports over the API: request one, follow its progress, download its file."""

from typing import Any

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotAcceptable, ParseError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches, order_by_precedence
from rest_framework.views import APIView

from annotate.api import list_page, request_user
from annotate.schema import CURSOR, MAX_ID, PAGE_SIZE, ErrorOut, page_of
from apps.exports.cursor import format_since, next_since
from apps.exports.formats import FORMATS
from apps.exports.jobs import (
    CARD_CONTENT_TYPE,
    FILE_CONTENT_TYPES,
    card_name,
    export_job_cancel,
    export_job_request,
)
from apps.exports.models import ExportJob, ExportStatus, FileFormat
from apps.exports.options import PROMPT_FORMS, SOURCES
from apps.exports.selectors import AGGREGATES
from apps.exports.storage import export_storage, signs_urls, storage_error
from apps.projects.selectors import project_for_lead

CONTENT_TYPES = FILE_CONTENT_TYPES


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This export has expired and its file was deleted; request a new one."
    default_code = "gone"


class NotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This export has no file yet."
    default_code = "not_ready"


class ExportJobSerializer(serializers.ModelSerializer[ExportJob]):
    project = serializers.CharField(source="project.slug")
    requested_by = serializers.CharField(
        source="requested_by.username", allow_null=True, default=None
    )
    parameters = serializers.DictField(
        child=serializers.CharField(),
        help_text="The filters besides format, as the streaming export's query parameters.",
    )
    percent = serializers.FloatField(
        allow_null=True, help_text="rows_written over rows_total; 100 once done."
    )
    url = serializers.SerializerMethodField(help_text="This job.")
    download = serializers.SerializerMethodField(help_text="The file, once done; else null.")
    card = serializers.SerializerMethodField(help_text="The dataset card, once done; else null.")
    next_since = serializers.SerializerMethodField(
        help_text=(
            "Once done: the `since` of the next incremental pull (as the streaming export's "
            "X-Next-Since header), EXPORT_SINCE_SETTLE seconds before this run began reading."
        )
    )

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "project",
            "requested_by",
            "format",
            "file_format",
            "parameters",
            "status",
            "rows_written",
            "rows_total",
            "percent",
            "attempts",
            "heartbeat_at",
            "error",
            "file_size",
            "sha256",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "url",
            "download",
            "card",
            "next_since",
        ]
        extra_kwargs = {
            "rows_total": {"help_text": "An estimate of the rows, made when the run starts."},
            "attempts": {"help_text": "Runs so far (a worker that died is retried)."},
            "error": {"help_text": "Why it failed, why it was re-queued, or who cancelled it."},
        }

    def _link(self, job: ExportJob, name: str) -> str:
        request = self.context["request"]
        kwargs = {"slug": job.project.slug, "job_id": job.pk}
        return str(request.build_absolute_uri(reverse(name, kwargs=kwargs)))

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: ExportJob) -> str:
        return self._link(job, "api-export-job")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download(self, job: ExportJob) -> str | None:
        if job.status != ExportStatus.DONE:
            return None
        return self._link(job, "api-export-job-download")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_card(self, job: ExportJob) -> str | None:
        if job.status != ExportStatus.DONE:
            return None
        return self._link(job, "api-export-job-card")

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_since(self, job: ExportJob) -> str | None:
        # started_at is stamped when the (last) run is claimed, before it reads a row.
        if job.status != ExportStatus.DONE or job.started_at is None:
            return None
        return format_since(next_since(job.started_at))


EXPORT_JOB_IN = inline_serializer(
    name="ExportJobIn",
    fields={
        "format": serializers.ChoiceField(
            choices=list(FORMATS), required=False, help_text="As the streaming export; trl."
        ),
        "file_format": serializers.ChoiceField(
            choices=FileFormat.values, required=False, help_text="jsonl (default) or parquet."
        ),
        "batch": serializers.IntegerField(
            required=False, min_value=0, max_value=MAX_ID, help_text="Only this batch."
        ),
        "min_votes": serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=1000,
            help_text="Pairwise formats and listwise: at least this many votes.",
        ),
        "min_agreement": serializers.FloatField(
            required=False,
            min_value=0,
            max_value=1,
            help_text="Pairwise formats: the most-voted option's least share.",
        ),
        "aggregate": serializers.ChoiceField(
            choices=list(AGGREGATES),
            required=False,
            help_text="Pairwise formats: how votes name the chosen response (majority).",
        ),
        "models": serializers.CharField(
            required=False, help_text="Pairwise formats and arena: comma-separated model names."
        ),
        "include_gold": serializers.BooleanField(
            required=False, help_text="Include gold comparisons (false)."
        ),
        "since": serializers.DateTimeField(
            required=False,
            help_text="An ISO 8601 time with its offset: only what changed at or after it.",
        ),
        "criterion": serializers.CharField(
            required=False, help_text="Pairwise formats: one criterion's preferences."
        ),
        "split": serializers.ChoiceField(
            choices=["train", "test"], required=False, help_text="Every format: by prompt."
        ),
        "test_fraction": serializers.FloatField(
            required=False, min_value=0, max_value=1, help_text="With split (0.1)."
        ),
        "both_bad": serializers.ChoiceField(
            choices=["exclude", "include"], required=False, help_text="kto only."
        ),
        "include_ties": serializers.BooleanField(
            required=False, help_text="arena and judgments (true)."
        ),
        "sources": serializers.ChoiceField(
            choices=list(SOURCES),
            required=False,
            help_text="Every format: whose votes, human (default), ai (the AI judges') or all.",
        ),
        "prompt_form": serializers.ChoiceField(
            choices=list(PROMPT_FORMS),
            required=False,
            help_text=(
                "trl, trl-implicit, kto, listwise: conversational (default; message lists) or "
                "text (HH-style text, the response after a space), as the streaming export."
            ),
        ),
    },
)


def _job(request: Request, slug: str, job_id: int) -> ExportJob:
    project = project_for_lead(user=request.user, slug=slug)
    job = (
        ExportJob.objects.select_related("project", "requested_by")
        .filter(pk=job_id, project=project)
        .first()
    )
    if job is None:
        raise Http404("No such export.")
    return job


class ExportJobs(APIView):
    """GET the project's background exports; POST to request one."""

    @extend_schema(
        operation_id="export_jobs_list",
        summary="List the project's background exports",
        description="Staff and the project's leads; oldest first, with status and progress.",
        parameters=[CURSOR, PAGE_SIZE],
        responses={200: page_of("ExportJobPage", ExportJobSerializer(many=True)), 404: ErrorOut},
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        jobs = ExportJob.objects.filter(project=project).select_related("project", "requested_by")
        context = {"request": request}
        return list_page(
            request, self, jobs, lambda job: ExportJobSerializer(job, context=context).data
        )

    @extend_schema(
        operation_id="export_jobs_create",
        summary="Request a background export",
        description=(
            "Staff and the project's leads. The body takes `format`, `file_format` (`jsonl` or "
            "`parquet`) and the streaming export's filters (numbers and booleans may be JSON "
            "values), validated as that endpoint does: a 400 names each bad parameter, and "
            "nothing is created. 202 with the job: poll its `url` until `status` is `done` "
            "(then `download` and `card` are links) or `failed` (see `error`). Without a "
            "broker (Celery eager) the job runs during the request and comes back finished."
        ),
        request=EXPORT_JOB_IN,
        responses={202: ExportJobSerializer, 400: ErrorOut, 404: ErrorOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        if not isinstance(request.data, dict):
            raise ParseError('Send a JSON object: {"format": ..., ...}.')
        job = export_job_request(project=project, user=request_user(request), data=request.data)
        job = ExportJob.objects.select_related("project", "requested_by").get(pk=job.pk)
        body = ExportJobSerializer(job, context={"request": request}).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": str(body["url"])}
        )


class ExportJobDetail(APIView):
    @extend_schema(
        operation_id="export_job_retrieve",
        summary="A background export",
        description=(
            "Staff and the project's leads: status (queued, running, done, failed, expired, "
            "cancelled), "
            "progress (rows_written of about rows_total, percent), and once done the links "
            "to its file and dataset card."
        ),
        responses={200: ExportJobSerializer, 404: ErrorOut},
    )
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        job = _job(request, slug, job_id)
        return Response(
            ExportJobSerializer(job, context={"request": request}).data,
            headers={"Cache-Control": "no-store"},
        )


def _accepts(request: Request, content_type: str) -> bool:
    """Whether the request's Accept header takes `content_type` (no header takes anything)."""
    header = request.META.get("HTTP_ACCEPT", "").strip()
    if not header:
        return True
    wanted = content_type.split(";", 1)[0].strip()
    accepted = [media for group in order_by_precedence(header.split(",")) for media in group]
    return any(media_type_matches(wanted, media.split(";", 1)[0].strip()) for media in accepted)


class _FileView(APIView):
    """A view answering with a file (or a redirect to it) rather than a rendered body. An
    Accept header naming one of `file_types` is welcome (DRF alone would answer 406: no renderer
    makes them); the view's errors are then JSON."""

    file_types: tuple[str, ...] = ()

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        if any(_accepts(request, file_type) for file_type in self.file_types):
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)


def _file_response(
    request: Request, job: ExportJob, name: str, filename: str, content_type: str
) -> FileResponse | HttpResponseRedirect:
    """The export's file: streamed from the local folder, or, from S3, a redirect to a signed
    link valid EXPORT_URL_EXPIRY seconds. Called after the permission check (`_job`)."""
    if job.status == ExportStatus.EXPIRED or (
        job.status == ExportStatus.DONE and job.expires_at and job.expires_at <= timezone.now()
    ):
        raise Gone()
    if job.status != ExportStatus.DONE or not job.file_name:
        raise NotReady(f"This export is {job.status}; it has no file.")
    # An Accept header that takes JSON only is let through, as it always was.
    if not (_accepts(request, content_type) or _accepts(request, "application/json")):
        raise NotAcceptable(f"This file is {content_type.split(';')[0]}: accept that type, or */*.")
    storage = export_storage()
    try:
        if signs_urls(storage):
            if not storage.exists(name):
                raise Gone("The export's file is missing; request a new one.")
            url = storage.signed_url(  # type: ignore[attr-defined]
                name,
                expire=settings.EXPORT_URL_EXPIRY,
                parameters={
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": str(content_disposition_header(True, filename)),
                },
            )
            redirect = HttpResponseRedirect(url)
            redirect["Cache-Control"] = "no-store"
            return redirect
        file: Any = storage.open(name, "rb")
    except FileNotFoundError:
        raise Gone("The export's file is missing; request a new one.") from None
    except APIException:
        raise
    except Exception as exc:
        # The storage's own failure (S3 refused or unreachable) answers 503 with its message.
        if (unavailable := storage_error(exc)) is None or unavailable is exc:
            raise
        raise unavailable from exc
    response = FileResponse(file, as_attachment=True, filename=filename, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


_REDIRECT = OpenApiResponse(
    description=(
        "With the S3 storage (EXPORT_STORAGE=s3): a redirect to a signed link of the file, "
        "valid EXPORT_URL_EXPIRY seconds (300 by default)."
    )
)


class ExportJobDownload(_FileView):
    file_types = tuple(FILE_CONTENT_TYPES.values())

    @extend_schema(
        operation_id="export_job_download",
        summary="Download a background export's file",
        description=(
            "Staff and the project's leads. The file, streamed: `application/jsonl` or "
            "`application/vnd.apache.parquet` (an Accept header may name it); or, with the S3 "
            "storage, a 302 to a signed link valid EXPORT_URL_EXPIRY seconds, minted after the "
            "same permission check. 409 while it is not done; 410 once expired; 406 when Accept "
            "names another file type; 503 when the storage does not answer."
        ),
        responses={
            (200, "application/jsonl"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            302: _REDIRECT,
            404: ErrorOut,
            406: ErrorOut,
            409: ErrorOut,
            410: ErrorOut,
            503: ErrorOut,
        },
    )
    def get(self, request: Request, slug: str, job_id: int) -> FileResponse | HttpResponseRedirect:
        job = _job(request, slug, job_id)
        suffix = "jsonl" if job.file_format == FileFormat.JSONL else "parquet"
        return _file_response(
            request,
            job,
            job.file_name,
            f"{job.project.slug}-{job.format}-{job.pk}.{suffix}",
            CONTENT_TYPES[FileFormat(job.file_format)],
        )


class ExportJobCard(_FileView):
    file_types = (CARD_CONTENT_TYPE,)

    @extend_schema(
        operation_id="export_job_card",
        summary="A background export's dataset card",
        description=(
            "Staff and the project's leads. The dataset card written with the file, in "
            "Markdown (`text/markdown`; an Accept header may name it), or with the S3 storage "
            "a 302 to a signed link, as the file's download. 409 while it is not done; 410 "
            "once expired; 503 when the storage does not answer."
        ),
        responses={
            (200, "text/markdown"): OpenApiTypes.STR,
            302: _REDIRECT,
            404: ErrorOut,
            406: ErrorOut,
            409: ErrorOut,
            410: ErrorOut,
            503: ErrorOut,
        },
    )
    def get(self, request: Request, slug: str, job_id: int) -> FileResponse | HttpResponseRedirect:
        job = _job(request, slug, job_id)
        return _file_response(
            request,
            job,
            card_name(job.file_name),
            f"{job.project.slug}-{job.format}-{job.pk}.card.md",
            CARD_CONTENT_TYPE,
        )


class ExportJobCancel(APIView):
    @extend_schema(
        operation_id="export_job_cancel",
        summary="Cancel a background export",
        description=(
            "Staff and the project's leads; no body. A queued or running export becomes "
            "`cancelled`: a queued one is never started, a running one's worker stops at its "
            "next progress write and deletes its partial file. Recorded in the audit log. 200 "
            "with the job; 409 when it has already ended (done, failed, expired or cancelled): "
            "a done export's file stays until it expires."
        ),
        request=None,
        responses={200: ExportJobSerializer, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, slug: str, job_id: int) -> Response:
        job = _job(request, slug, job_id)
        job = export_job_cancel(job=job, user=request_user(request))  # NotCancellable: 409
        return Response(
            ExportJobSerializer(job, context={"request": request}).data,
            headers={"Cache-Control": "no-store"},
        )
