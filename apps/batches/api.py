import io
import tempfile
from typing import IO, Any

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import int_param, list_page, request_user
from annotate.errors import PayloadTooLarge
from annotate.middleware import MULTIPART_SLACK
from annotate.schema import BATCH, CURSOR, PAGE_SIZE, ComparisonRow, ErrorOut, page_of
from apps.batches.honeypots import batch_honeypot_count, honeypots_of_batch
from apps.batches.models import Batch, BatchStatus, Comparison
from apps.batches.selectors import batch_awaiting_candidates, prompts_awaiting_candidates
from apps.batches.services import (
    batch_delete,
    batch_import,
    batch_import_cancel,
)
from apps.projects.selectors import project_for_lead, projects_led_by

JSONL_TYPES = ("application/jsonl", "application/x-ndjson")


class JSONLinesParser(BaseParser):
    """Hands the raw body to the view as a file, spooled to disk when large."""

    media_type = "application/jsonl"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Any = None,
    ) -> Any:
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        if stream is None:
            return spool  # an empty body: the importer reports the empty file
        size = 0
        while chunk := stream.read(1024 * 1024):
            size += len(chunk)
            if size > settings.IMPORT_MAX_BYTES:
                spool.close()
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {settings.IMPORT_MAX_BYTES} bytes."
                )
            spool.write(chunk)
        spool.seek(0)
        return spool


class NDJSONParser(JSONLinesParser):
    media_type = "application/x-ndjson"


class BatchSerializer(serializers.ModelSerializer[Batch]):
    project = serializers.CharField(source="project.slug")
    prompts = serializers.IntegerField(source="prompt_count")
    comparisons = serializers.IntegerField(source="comparison_count")
    honeypots = serializers.SerializerMethodField(
        help_text="The generated gold items (honeypots) its import made; among `comparisons`."
    )
    awaiting_candidates = serializers.SerializerMethodField(
        help_text="Prompts with fewer candidates than a comparison needs (2; 3 listwise), and "
        "so no comparison yet: they wait for their responses to be generated. 0 unless "
        "imported with `candidates=optional`."
    )

    class Meta:
        model = Batch
        fields = [
            "id",
            "project",
            "name",
            "status",
            "priority",
            "prompts",
            "comparisons",
            "honeypots",
            "candidates_optional",
            "awaiting_candidates",
            "errors",
            "created_at",
            "finished_at",
            "import_attempts",
            "import_running",
            "import_heartbeat_at",
            "import_note",
        ]
        extra_kwargs = {
            "import_attempts": {"help_text": "How many runs a background import has had."},
            "candidates_optional": {
                "help_text": "Imported with `candidates=optional`: its prompts may have fewer "
                "candidates than a comparison needs, for generation."
            },
            "import_running": {"help_text": "Whether a worker holds the import now."},
            "import_heartbeat_at": {
                "help_text": "The running import's last heartbeat; while waiting for a worker, "
                "when its task was last sent."
            },
            "import_note": {
                "help_text": "Why an earlier run was re-queued, or why the task was sent again."
            },
        }

    def get_honeypots(self, batch: Batch) -> int:
        counted = getattr(batch, "honeypot_count", None)
        return honeypots_of_batch(batch.pk) if counted is None else int(counted)

    def get_awaiting_candidates(self, batch: Batch) -> int:
        counted = getattr(batch, "awaiting_count", None)
        return prompts_awaiting_candidates(batch) if counted is None else int(counted)


# The import's `candidates` parameter: whether a prompt may come with fewer candidates than a
# comparison needs (to have them generated), by its value.
CANDIDATES_VALUES = {"required": False, "optional": True}


def candidates_param(request: Request) -> bool:
    """`candidates=optional|required` (the query, or a multipart form's field); 400 otherwise."""
    value = request.query_params.get("candidates")
    if value is None and request.content_type.startswith("multipart/form-data"):
        form: Any = request.data
        value = form.get("candidates")
    if value is None or value == "":
        return False
    if value not in CANDIDATES_VALUES:
        raise ValidationError(
            {
                "candidates": [
                    f"Unknown value {str(value)[:40]!r}: use 'optional' (prompts may come with "
                    "fewer candidates than a comparison needs, even none, to have them "
                    "generated) or 'required' (the default)."
                ]
            }
        )
    return CANDIDATES_VALUES[value]


class BatchCreate(APIView):
    """GET the project's batches (cursor-paginated, oldest first); POST a JSON Lines file: the
    body itself, or multipart with a field `file`."""

    parser_classes = [JSONLinesParser, NDJSONParser, *APIView.parser_classes]

    @staticmethod
    def body_limit(request: HttpRequest) -> int:
        """The largest body taken (annotate.middleware refuses a larger Content-Length with
        413 before reading it): the file limit, and multipart's framing around the file."""
        if request.content_type == "multipart/form-data":
            return int(settings.IMPORT_MAX_BYTES) + MULTIPART_SLACK
        return int(settings.IMPORT_MAX_BYTES)

    @extend_schema(
        summary="List the project's batches",
        description="Staff and the project's leads; oldest first.",
        parameters=[CURSOR, PAGE_SIZE],
        responses={200: page_of("BatchPage", BatchSerializer(many=True))},
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        batches = (
            Batch.objects.filter(project=project)
            .select_related("project")
            .annotate(
                honeypot_count=batch_honeypot_count(), awaiting_count=batch_awaiting_candidates()
            )
        )
        return list_page(request, self, batches, lambda b: BatchSerializer(b).data)

    @extend_schema(
        summary="Import a batch",
        description=(
            "Staff and the project's leads. The JSON Lines file as the body "
            "(`Content-Type: application/jsonl` or `application/x-ndjson`), or multipart with "
            "a field `file`. Imported whole or not at all: 400 lists every bad line. Files "
            "above IMPORT_BACKGROUND_BYTES are imported in the background (202; poll the "
            "batch); 413 above IMPORT_MAX_BYTES. With `candidates=optional`, a prompt may "
            "have fewer candidates than a comparison needs (none, or 1; fewer than 3 in a "
            "listwise project): it is stored without comparisons, to have its responses "
            "generated (`awaiting_candidates` counts them)."
        ),
        parameters=[
            OpenApiParameter("name", str, description="A name for the batch.", required=False),
            OpenApiParameter(
                "candidates",
                str,
                enum=list(CANDIDATES_VALUES),
                description="`optional`: prompts may come without (enough) candidates, for "
                "generation. Also taken as a multipart field. Default `required`.",
                required=False,
            ),
        ],
        request={
            "application/jsonl": OpenApiTypes.BINARY,
            "application/x-ndjson": OpenApiTypes.BINARY,
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "candidates": {"type": "string", "enum": list(CANDIDATES_VALUES)},
                },
            },
        },
        responses={201: BatchSerializer, 202: BatchSerializer, 400: BatchSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        name = request.query_params.get("name", "")
        candidates_optional = candidates_param(request)
        body: Any = request.data
        source: IO[bytes]
        if hasattr(body, "read"):
            source = body
        elif request.content_type.split(";")[0].strip() in JSONL_TYPES:
            source = io.BytesIO(b"")  # an empty body: the importer reports the empty file
        else:
            upload = request.FILES.get("file")
            if upload is None:
                raise ParseError(
                    "Send the file as the body (Content-Type: application/jsonl) or as "
                    "multipart form data with a field named 'file'."
                )
            if upload.size is not None and upload.size > settings.IMPORT_MAX_BYTES:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {settings.IMPORT_MAX_BYTES} bytes."
                )
            source = upload
            name = name or body.get("name") or upload.name or ""
        source.seek(0, 2)
        size = source.tell()
        source.seek(0)
        batch = batch_import(
            project=project,
            source=source,
            size=size,
            name=str(name)[:200],
            created_by=request_user(request),
            candidates_optional=candidates_optional,
        )
        batch.refresh_from_db()
        code = (
            status.HTTP_202_ACCEPTED
            if batch.status == BatchStatus.IMPORTING
            else status.HTTP_201_CREATED
        )
        if batch.status == BatchStatus.FAILED:
            return Response(
                {**BatchSerializer(batch).data, "errors": batch.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(BatchSerializer(batch).data, status=code)


def _led_batch(request: Request, batch_id: int) -> Batch:
    """The batch, if the user is staff or leads its project; 404 otherwise."""
    return get_object_or_404(
        Batch.objects.select_related("project").annotate(
            honeypot_count=batch_honeypot_count(), awaiting_count=batch_awaiting_candidates()
        ),
        pk=batch_id,
        project__in=projects_led_by(request.user),
    )


class BatchDetail(APIView):
    @extend_schema(
        summary="A batch",
        description="Staff and the project's leads: its status, counts and import errors.",
        responses={200: BatchSerializer, 404: ErrorOut},
    )
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(BatchSerializer(_led_batch(request, batch_id)).data)

    @extend_schema(
        operation_id="batch_delete",
        summary="Delete a batch that holds no judgments",
        description=(
            "Staff and the project's leads. A batch that is importing (stuck or not: its "
            "import stops), failed, cancelled, draft or done, and holds no judgments, is "
            "deleted with its prompts, candidates and comparisons, and the audit log records "
            "it (`batch_deleted`). 204; 409 saying why when it is active or paused, holds "
            "judgments, has comparisons leased now, or is storing its rows."
        ),
        request=None,
        responses={204: None, 404: ErrorOut, 409: ErrorOut},
    )
    def delete(self, request: Request, batch_id: int) -> Response:
        batch = _led_batch(request, batch_id)
        batch_delete(batch=batch, by=request_user(request))  # BatchActionError: 409
        return Response(status=status.HTTP_204_NO_CONTENT)


class BatchCancel(APIView):
    @extend_schema(
        operation_id="batch_import_cancel",
        summary="Cancel a background import",
        description=(
            "Staff and the project's leads; no body. An import waiting for a worker or checking "
            "its file becomes `cancelled`: a queued one is never started, a running one's "
            "worker stops at its next progress write. Recorded in the audit log. 200 with the "
            "batch; 409 saying why when it is not importing, or is storing its rows (then it "
            "is active in a moment)."
        ),
        request=None,
        responses={200: BatchSerializer, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, batch_id: int) -> Response:
        batch = _led_batch(request, batch_id)
        batch = batch_import_cancel(batch=batch, by=request_user(request))  # BatchActionError: 409
        return Response(BatchSerializer(batch).data)


def comparison_row(comparison: Comparison) -> dict[str, Any]:
    return {
        "id": comparison.pk,
        "batch": comparison.batch_id,
        "prompt_id": comparison.prompt.external_id,
        "candidate_a_id": comparison.candidate_a.external_id,
        "candidate_b_id": comparison.candidate_b.external_id,
        "judgment_count": comparison.judgment_count,
        "lease_count": comparison.lease_count,
        "votes": {
            "a": comparison.votes_a,
            "b": comparison.votes_b,
            "tie": comparison.votes_tie,
            "both_bad": comparison.votes_both_bad,
        },
        "skip_count": comparison.skip_count,
        "complete": comparison.complete,
        "is_gold": comparison.is_gold,
        "listwise": comparison.candidate_ids is not None,
    }


class ComparisonList(APIView):
    """GET the project's comparisons with their counts, cursor-paginated in id order.
    Filters: `batch=<id>`, `complete=true|false`, `gold=true|false`."""

    @extend_schema(
        summary="List the project's comparisons",
        description="Staff and the project's leads: each with its counts and votes.",
        parameters=[
            BATCH,
            OpenApiParameter(
                "complete", bool, description="Only complete (or open) ones.", required=False
            ),
            OpenApiParameter(
                "gold", bool, description="Only gold items (or ordinary ones).", required=False
            ),
            CURSOR,
            PAGE_SIZE,
        ],
        responses={200: page_of("ComparisonPage", ComparisonRow(many=True)), 400: ErrorOut},
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        comparisons = Comparison.objects.filter(project=project).select_related(
            "prompt", "candidate_a", "candidate_b"
        )
        if (batch := int_param(request, "batch")) is not None:
            comparisons = comparisons.filter(batch_id=batch)
        for name, field in (("complete", "complete"), ("gold", "is_gold")):
            value = request.query_params.get(name)
            if value is None:
                continue
            if value not in ("true", "false"):
                raise ValidationError({name: ["Use true or false."]})
            comparisons = comparisons.filter(**{field: value == "true"})
        return list_page(request, self, comparisons, comparison_row)
