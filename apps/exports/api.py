import json
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.batches.models import Batch
from apps.exports.selectors import FORMATS, export_rows
from apps.exports.stats import project_stats, stats_votes
from apps.projects.models import Project
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


def batch_of(request: Request, project: Project) -> int | None:
    """The `batch` query parameter: None, or the id of one of the project's batches (else 400)."""
    batch = request.query_params.get("batch")
    if batch in (None, ""):
        return None
    if not str(batch).isdigit():
        raise ValidationError({"batch": ["Must be a batch id (a whole number)."]})
    if not Batch.objects.filter(pk=int(str(batch)), project=project).exists():
        raise ValidationError({"batch": ["No such batch in this project."]})
    return int(str(batch))


class Stats(APIView):
    """GET agreement, annotator and model statistics of a project, or of one batch (?batch=<id>)."""

    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        batch_id = batch_of(request, project)
        report = project_stats(stats_votes(project=project, batch_id=batch_id), batch_id=batch_id)
        return Response(report, headers={"Cache-Control": "no-store"})
