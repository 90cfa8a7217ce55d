import io
import tempfile
from typing import IO, Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import PayloadTooLarge, int_param, list_page, request_user
from apps.batches.models import Batch, BatchStatus, Comparison
from apps.batches.services import batch_import
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


class BatchSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    prompts = serializers.IntegerField(source="prompt_count")
    comparisons = serializers.IntegerField(source="comparison_count")

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
            "errors",
            "created_at",
            "finished_at",
        ]


class BatchCreate(APIView):
    """GET the project's batches (cursor-paginated, oldest first); POST a JSON Lines file: the
    body itself, or multipart with a field `file`."""

    parser_classes = [JSONLinesParser, NDJSONParser, *APIView.parser_classes]

    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        batches = Batch.objects.filter(project=project).select_related("project")
        return list_page(request, self, batches, lambda b: BatchSerializer(b).data)

    def post(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        name = request.query_params.get("name", "")
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


class BatchDetail(APIView):
    def get(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(
            Batch.objects.select_related("project"),
            pk=batch_id,
            project__in=projects_led_by(request.user),
        )
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
