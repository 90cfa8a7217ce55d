"""AI judging jobs over REST: start a project's judge over a batch, follow it, cancel and
resume it. Staff and the project's leads; the rules are apps.judges.services'."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import request_user
from annotate.schema import ErrorOut
from apps.batches.models import Batch
from apps.judges.models import Judge, JudgeJob
from apps.judges.services import JudgeInvalid, judging_cancel, judging_resume, judging_start
from apps.projects.selectors import projects_led_by


class JudgingIn(serializers.Serializer[Any]):
    judge = serializers.CharField(max_length=100, help_text="The judge's name in the project.")


class JudgingOut(serializers.ModelSerializer[JudgeJob]):
    judge = serializers.CharField(source="judge.name")
    template_version = serializers.CharField(source="judge.template_version")
    cost = serializers.DecimalField(max_digits=16, decimal_places=8, coerce_to_string=True)

    class Meta:
        model = JudgeJob
        fields = [
            "id",
            "judge",
            "template_version",
            "batch",
            "status",
            "note",
            "attempts",
            "comparisons_total",
            "comparisons_done",
            "comparisons_failed",
            "inconsistent",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "created_at",
            "finished_at",
        ]


def _led_job(request: Request, judging_id: int) -> JudgeJob:
    return get_object_or_404(
        JudgeJob.objects.select_related("judge__project", "batch"),
        pk=judging_id,
        judge__project__in=projects_led_by(request_user(request)),
    )


class JudgingList(APIView):
    @extend_schema(
        operation_id="judging_list",
        summary="A batch's AI judging jobs",
        description="Staff and the project's leads: every judging job of the batch, newest first.",
        responses={200: JudgingOut(many=True), 404: ErrorOut},
    )
    def get(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(
            Batch, pk=batch_id, project__in=projects_led_by(request_user(request))
        )
        jobs = JudgeJob.objects.filter(batch=batch).select_related("judge")[:100]
        return Response(JudgingOut(jobs, many=True).data)

    @extend_schema(
        operation_id="judging_start",
        summary="Judge a batch's comparisons with an AI judge",
        description=(
            "Staff and the project's leads. The judge (by name) labels each comparison of the "
            "batch it has not judged, in both orders, in the background. 202 with the job; 400 "
            "naming the field (an unknown judge, a batch that is not imported); 409 while the "
            "judge has a job queued or running; 503 when the task queue is gone."
        ),
        request=JudgingIn,
        responses={202: JudgingOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut},
    )
    def post(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(
            Batch.objects.select_related("project"),
            pk=batch_id,
            project__in=projects_led_by(request_user(request)),
        )
        given = JudgingIn(data=request.data)
        given.is_valid(raise_exception=True)
        judge = Judge.objects.filter(project=batch.project, name=given.validated_data["judge"])
        found = judge.select_related("project", "endpoint").first()
        if found is None:
            raise ValidationError({"judge": ["No AI judge of this project has that name."]})
        try:
            job = judging_start(judge=found, batch=batch, by=request_user(request))
        except JudgeInvalid as invalid:
            raise ValidationError({k: [v] for k, v in invalid.problems.items()}) from None
        return Response(JudgingOut(job).data, status=status.HTTP_202_ACCEPTED)


class JudgingDetail(APIView):
    @extend_schema(
        operation_id="judging_detail",
        summary="An AI judging job",
        description="Staff and the project's leads: its progress, disagreements, usage and cost.",
        responses={200: JudgingOut, 404: ErrorOut},
    )
    def get(self, request: Request, judging_id: int) -> Response:
        return Response(JudgingOut(_led_job(request, judging_id)).data)


class JudgingCancel(APIView):
    @extend_schema(
        operation_id="judging_cancel",
        summary="Cancel an AI judging job",
        description="Staff and the project's leads; no body. 409 unless queued or running.",
        request=None,
        responses={200: JudgingOut, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, judging_id: int) -> Response:
        job = judging_cancel(job=_led_job(request, judging_id), by=request_user(request))
        return Response(JudgingOut(job).data)


class JudgingResume(APIView):
    @extend_schema(
        operation_id="judging_resume",
        summary="Resume an AI judging job",
        description="Staff and the project's leads; no body. Judges what is not judged yet "
        "(the failed comparisons among them). 202; 409 when queued or running; 503 when the "
        "task queue is gone.",
        request=None,
        responses={202: JudgingOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut},
    )
    def post(self, request: Request, judging_id: int) -> Response:
        job = judging_resume(job=_led_job(request, judging_id), by=request_user(request))
        return Response(JudgingOut(job).data, status=status.HTTP_202_ACCEPTED)
