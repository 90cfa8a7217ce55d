import json
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from annotate.schema import BATCH, ErrorOut
from apps.exports.selectors import FORMATS, export_rows
from apps.projects.selectors import project_for_lead

LINES_PER_CHUNK = 200


def jsonl_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer: list[str] = []
    for row in rows:
        buffer.append(json.dumps(row, ensure_ascii=False))
        if len(buffer) >= LINES_PER_CHUNK:
            yield ("\n".join(buffer) + "\n").encode()
            buffer.clear()
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()


class Export(APIView):
    """GET a streamed JSON Lines export: ?format=trl|judgments[&batch=<id>]."""

    @extend_schema(
        summary="Export the project",
        description=(
            "Staff and the project's leads. Streamed JSON Lines (`application/jsonl`), one row "
            "per line, in a stable order; annotators by pseudonym; gold items left out. See "
            "the README's export formats for every field."
        ),
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=list(FORMATS),
                description="trl: chosen/rejected pairs by majority; judgments: the raw votes.",
                required=False,
            ),
            BATCH,
        ],
        responses={(200, "application/jsonl"): OpenApiTypes.BINARY, 400: ErrorOut},
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        project = project_for_lead(user=request.user, slug=slug)
        format = request.query_params.get("format", "trl")
        if format not in FORMATS:
            raise ValidationError({"format": [f"Use one of {', '.join(FORMATS)}."]})
        batch = request.query_params.get("batch")
        batch_id = None
        if batch not in (None, ""):
            if not str(batch).isdigit():
                raise ValidationError({"batch": ["Must be a batch id (a whole number)."]})
            batch_id = int(str(batch))
        rows = export_rows(project=project, format=format, batch_id=batch_id)
        response = StreamingHttpResponse(jsonl_chunks(rows), content_type="application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-{format}.jsonl"'
        response["Cache-Control"] = "no-store"
        return response
