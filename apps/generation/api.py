"""Generation jobs over REST: start one for a batch, follow its progress, cancel and resume it.
Staff and the batch's project's leads; the rules are apps.generation.services'."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import request_user
from annotate.schema import ErrorOut
from apps.batches.models import Batch
from apps.generation.models import MAX_SAMPLES, GenerationJob, Pairing
from apps.generation.services import (
    GenerationInvalid,
    batch_usage,
    endpoints_named,
    generation_cancel,
    generation_resume,
    generation_start,
    job_failures_by_prompt,
)
from apps.projects.selectors import projects_led_by


class GenerationIn(serializers.Serializer[Any]):
    endpoints = serializers.ListField(
        child=serializers.CharField(max_length=100),
        min_length=1,
        max_length=16,
        help_text="The endpoints to ask, by name (the project's own, or shared ones).",
    )
    samples = serializers.IntegerField(
        min_value=1, max_value=MAX_SAMPLES, help_text="Responses per prompt from each endpoint."
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    max_tokens = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False, allow_null=True
    )
    seed = serializers.IntegerField(
        min_value=0,
        max_value=2**62,
        required=False,
        allow_null=True,
        help_text="Sample i of a prompt is asked with seed + i.",
    )
    system_prompt = serializers.CharField(
        required=False, allow_blank=True, max_length=100_000, trim_whitespace=False
    )
    pairing = serializers.ChoiceField(
        choices=Pairing.choices,
        required=False,
        default=Pairing.ALL,
        help_text="all: every pair of a prompt's responses; random: `pairs_per_prompt` of them "
        "at random; models: one pair per pair of models.",
    )
    pairs_per_prompt = serializers.IntegerField(
        min_value=1, max_value=120, required=False, allow_null=True
    )


class FailureOut(serializers.Serializer[Any]):
    endpoint = serializers.CharField()
    sample = serializers.IntegerField()
    error = serializers.CharField(help_text="http_<status>, timeout, connection, malformed...")
    detail = serializers.CharField()
    attempts = serializers.IntegerField()


class PromptFailuresOut(serializers.Serializer[Any]):
    prompt = serializers.CharField(help_text="The prompt's id in the import.")
    failures = FailureOut(many=True)


class GenerationOut(serializers.ModelSerializer[GenerationJob]):
    endpoints = serializers.SerializerMethodField()
    cost = serializers.DecimalField(
        max_digits=16,
        decimal_places=8,
        coerce_to_string=True,
        help_text="Estimated, at the endpoints' prices per million tokens.",
    )
    failures = serializers.SerializerMethodField(
        help_text="The failed requests (the first 200), by prompt; a resume tries them again."
    )

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "batch",
            "status",
            "note",
            "endpoints",
            "samples",
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "system_prompt",
            "pairing",
            "pairs_per_prompt",
            "attempts",
            "requests_total",
            "requests_done",
            "requests_failed",
            "prompts_total",
            "prompts_done",
            "comparisons_made",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "created_at",
            "finished_at",
            "failures",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_endpoints(self, job: GenerationJob) -> list[str]:
        return [e.name for e in job.endpoints.all()]

    @extend_schema_field(PromptFailuresOut(many=True))
    def get_failures(self, job: GenerationJob) -> list[dict[str, Any]]:
        return job_failures_by_prompt(job)


class UsageOut(serializers.Serializer[Any]):
    candidates = serializers.IntegerField(help_text="Generated candidates in the batch.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=16, decimal_places=8, coerce_to_string=True)
    unpriced = serializers.IntegerField(
        help_text="Candidates without an estimate (no prices, or no token counts)."
    )


class GenerationListOut(serializers.Serializer[Any]):
    usage = UsageOut(help_text="What the batch's generated candidates used, every job together.")
    jobs = GenerationOut(many=True)


def _led_batch(request: Request, batch_id: int) -> Batch:
    return get_object_or_404(
        Batch.objects.select_related("project"),
        pk=batch_id,
        project__in=projects_led_by(request_user(request)),
    )


def _led_job(request: Request, generation_id: int) -> GenerationJob:
    return get_object_or_404(
        GenerationJob.objects.select_related("batch__project"),
        pk=generation_id,
        batch__project__in=projects_led_by(request_user(request)),
    )


class GenerationList(APIView):
    @extend_schema(
        operation_id="generation_list",
        summary="A batch's generation jobs",
        description="Staff and the project's leads: every job of the batch, newest first, "
        "with the batch's token usage and estimated cost.",
        responses={200: GenerationListOut, 404: ErrorOut},
    )
    def get(self, request: Request, batch_id: int) -> Response:
        batch = _led_batch(request, batch_id)
        jobs = GenerationJob.objects.filter(batch=batch).prefetch_related("endpoints")[:100]
        usage = batch_usage(batch)
        return Response(
            {
                "usage": UsageOut(usage).data,
                "jobs": GenerationOut(jobs, many=True).data,
            }
        )

    @extend_schema(
        operation_id="generation_start",
        summary="Generate candidates for a batch's prompts",
        description=(
            "Staff and the project's leads. Asks each endpoint for `samples` responses per "
            "prompt, in the background, and forms each prompt's comparisons (by `pairing`) as "
            "soon as its responses are in. Idempotent per (prompt, endpoint, sample index): "
            "what a prompt has already is not asked again. 202 with the job; 400 naming the "
            "fields at fault; 409 while another job of the batch is queued or running; 503 "
            "when the task queue is gone (nothing created)."
        ),
        request=GenerationIn,
        responses={202: GenerationOut, 400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut},
    )
    def post(self, request: Request, batch_id: int) -> Response:
        batch = _led_batch(request, batch_id)
        given = GenerationIn(data=request.data)
        given.is_valid(raise_exception=True)
        data = dict(given.validated_data)
        try:
            endpoints = endpoints_named(batch, data.pop("endpoints"))
            job = generation_start(
                batch=batch, endpoints=endpoints, by=request_user(request), **data
            )
        except GenerationInvalid as invalid:
            raise ValidationError({k: [v] for k, v in invalid.problems.items()}) from None
        return Response(GenerationOut(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationDetail(APIView):
    @extend_schema(
        operation_id="generation_detail",
        summary="A generation job",
        description="Staff and the project's leads: its progress, usage, cost and failures.",
        responses={200: GenerationOut, 404: ErrorOut},
    )
    def get(self, request: Request, generation_id: int) -> Response:
        return Response(GenerationOut(_led_job(request, generation_id)).data)


class GenerationCancel(APIView):
    @extend_schema(
        operation_id="generation_cancel",
        summary="Cancel a generation job",
        description="Staff and the project's leads; no body. A queued or running job stops "
        "asking within about a second; the responses already asked for are kept. 409 when it "
        "is neither queued nor running.",
        request=None,
        responses={200: GenerationOut, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, generation_id: int) -> Response:
        job = generation_cancel(job=_led_job(request, generation_id), by=request_user(request))
        return Response(GenerationOut(job).data)


class GenerationResume(APIView):
    @extend_schema(
        operation_id="generation_resume",
        summary="Resume a generation job",
        description="Staff and the project's leads; no body. A cancelled, stopped or done job is "
        "queued again and asks only for the responses still missing (the failed ones among "
        "them). 202; 409 when it is queued or running, or another job of the batch is; 503 "
        "when the task queue is gone.",
        request=None,
        responses={202: GenerationOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut},
    )
    def post(self, request: Request, generation_id: int) -> Response:
        job = generation_resume(job=_led_job(request, generation_id), by=request_user(request))
        return Response(GenerationOut(job).data, status=status.HTTP_202_ACCEPTED)
