"""What the OpenAPI schema says of bodies and answers the views build by hand.

The hot-path views (next, submit) build their JSON with plain functions, not serializers (see
apps/judging/api.py); these serializers only describe those shapes to drf-spectacular. A test
(tests/annotate/test_schema.py) checks that every operation and parameter in the schema is
described.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from apps.judging.queue import NEXT_REASONS

# Ids are PostgreSQL bigints: whole numbers from 0 to 2**63 - 1.
MAX_ID = 2**63 - 1
ID = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
MAX_PAGE_SIZE = 1000

BATCH = OpenApiParameter(
    "batch", ID, description="Only this batch of the project (its id).", required=False
)
PAGE_SIZE = OpenApiParameter(
    "page_size",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    description="Rows a page: 100 by default, at most 1,000.",
    required=False,
)
CURSOR = OpenApiParameter(
    "cursor",
    str,
    description="Where a page starts: take it from the previous page's `next` or `previous`.",
    required=False,
)


def page_of(name: str, row: Any) -> Any:
    """A cursor page of rows, as the list endpoints answer."""
    return inline_serializer(
        name=name,
        fields={
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
            "previous": serializers.URLField(allow_null=True, help_text="The page before."),
            "results": row,
        },
    )


class CandidateShown(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="The response's id, as imported.")
    text = serializers.CharField(help_text="The response, Markdown.")


class AssignmentOut(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        choices=["assignment", "probe"],
        help_text=(
            "`assignment`: a lease, judged at /assignments/<id>/judgment/. `probe` (only with "
            "`?probes=1`): a consistency probe, answered at "
            "/projects/<slug>/probes/<id>/judgment/."
        ),
    )
    id = serializers.IntegerField(
        help_text="The lease (assignment) id, or the probe's: answer it at its kind's route."
    )
    comparison = serializers.IntegerField()
    prompt = serializers.JSONField(help_text="A string, or a list of {role, content} messages.")
    left = CandidateShown(help_text="The response shown on the left.")
    right = CandidateShown(help_text="The response shown on the right.")
    candidates = CandidateShown(
        many=True,
        required=False,
        help_text="Listwise projects: every response, in the order shown.",
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the lease lapses; null for a probe, which waits."
    )


class JudgmentIn(serializers.Serializer[Any]):
    choice = serializers.ChoiceField(
        choices=["left", "right", "tie", "both_bad"],
        required=False,
        help_text="Pairwise projects (and both_bad in graded ones).",
    )
    strength = serializers.IntegerField(
        required=False,
        min_value=-3,
        max_value=3,
        help_text="Graded projects: -3 (left significantly better) to 3 (right); 0 a tie.",
    )
    ranking = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="Listwise projects: response ids best first; a list of ids is a tie.",
    )
    criteria = serializers.DictField(
        required=False,
        help_text="Per criterion of the project: a choice, or a strength in graded projects.",
    )
    flags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Among the project's flags."
    )
    rationale = serializers.CharField(
        required=False, help_text="Per the project's rule (off, optional, required; a length)."
    )
    idempotency_key = serializers.CharField(
        required=False,
        help_text=(
            "Up to 128 characters: a retry with it and the same answer returns the judgment "
            "(200); with another answer, 409 and the judgment stored under it."
        ),
    )
    duration_ms = serializers.IntegerField(
        required=False, min_value=0, help_text="Time on task, counted while visible."
    )


class JudgmentOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    assignment = serializers.IntegerField()
    comparison = serializers.IntegerField()
    choice = serializers.CharField(help_text="left, right, tie, both_bad or ranking.")
    chosen_id = serializers.CharField(allow_null=True, help_text="The winner's id, or null.")
    strength = serializers.IntegerField(allow_null=True, help_text="As sent (screen terms).")
    criteria = serializers.DictField(help_text="Per criterion: {choice, strength}, as sent.")
    flags = serializers.ListField(child=serializers.CharField())
    ranking = serializers.JSONField(allow_null=True, help_text="Groups of ids, best first.")
    guideline_version = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField()
    duration_ms = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()


NEXT_HELP = (
    "Only with `?next=1`: your next assignment, as the next endpoint's 200 body; null when "
    "there is none (`next_reason` says why)."
)
NEXT_REASON_HELP = (
    "Only with `?next=1`: null when `next` is an assignment; `none_left` (what next answers "
    "with 204), `blocked` (its 403: a cap, the gold rule, no longer a member) or "
    "`unavailable` (the lease could not be taken just now: ask next)."
)
NEXT_DETAIL_HELP = "Only with `?next=1`: why `next` is null, for a person; null otherwise."


class JudgmentNextOut(JudgmentOut):
    """What a submit answers: the judgment, and with `?next=1` the next assignment."""

    next = AssignmentOut(allow_null=True, required=False, help_text=NEXT_HELP)
    next_reason = serializers.ChoiceField(
        choices=NEXT_REASONS,
        allow_null=True,
        required=False,
        help_text=NEXT_REASON_HELP,
    )
    next_detail = serializers.CharField(allow_null=True, required=False, help_text=NEXT_DETAIL_HELP)


class ProbeAnswerOut(serializers.Serializer[Any]):
    """What a consistency probe's answer or pass answers; with `?next=1` the next item too."""

    id = serializers.IntegerField(help_text="The probe's id.")
    comparison = serializers.IntegerField()
    answered_at = serializers.DateTimeField(help_text="When it was answered or passed.")
    next = AssignmentOut(allow_null=True, required=False, help_text=NEXT_HELP)
    next_reason = serializers.ChoiceField(
        choices=NEXT_REASONS, allow_null=True, required=False, help_text=NEXT_REASON_HELP
    )
    next_detail = serializers.CharField(allow_null=True, required=False, help_text=NEXT_DETAIL_HELP)


class UndoneOut(JudgmentOut):
    id = serializers.IntegerField(allow_null=True, help_text="null: it is no longer stored.")


class UndoOut(AssignmentOut):
    undone = UndoneOut(help_text="What you had answered; it is no longer stored.")


class MeOut(serializers.Serializer[Any]):
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


class ComparisonRow(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    batch = serializers.IntegerField()
    prompt_id = serializers.CharField()
    candidate_a_id = serializers.CharField()
    candidate_b_id = serializers.CharField()
    judgment_count = serializers.IntegerField()
    lease_count = serializers.IntegerField(help_text="Open leases now.")
    votes = serializers.DictField(
        child=serializers.IntegerField(), help_text="Per candidate: a, b, tie, both_bad."
    )
    skip_count = serializers.IntegerField()
    complete = serializers.BooleanField()
    is_gold = serializers.BooleanField()
    listwise = serializers.BooleanField()


class JudgmentRow(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    prompt_id = serializers.CharField()
    annotator = serializers.CharField(help_text="The annotator's pseudonym in the project.")
    left_id = serializers.CharField()
    right_id = serializers.CharField()
    choice = serializers.CharField()
    chosen_id = serializers.CharField(allow_null=True)
    candidate_a_id = serializers.CharField()
    strength = serializers.IntegerField(allow_null=True, help_text="Above 0: A is better.")
    criteria = serializers.DictField(help_text="Per criterion: {option, strength}, A-oriented.")
    flags = serializers.ListField(child=serializers.CharField())
    ranking = serializers.JSONField(allow_null=True)
    guideline_version = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField()
    duration_ms = serializers.IntegerField(allow_null=True)
    gold_correct = serializers.BooleanField(allow_null=True)
    # A declared field: DRF's metaclass takes it off the class, so it hides no Field.source.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["human", "ai"], help_text="Whose judgment: a person's or an AI judge's."
    )
    created_at = serializers.DateTimeField()


class ErrorOut(serializers.Serializer[Any]):
    """Every error answer of the API (its schema is ErrorOutSchema's, below)."""

    detail = serializers.CharField(help_text="What went wrong, for a person to read.")


class JudgmentConflictOut(ErrorOut):
    judgment = JudgmentOut(
        required=False,
        help_text=(
            "Only when the idempotency key was already used with another answer: the judgment "
            "stored under it, which stands."
        ),
    )


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        'An error: `{"detail": "..."}`; or, for bad parameters or fields, a list of messages '
        'per name (`{"batch": ["Must be a whole number."]}`); or, for a bad import file, '
        '`{"errors": [{"line", "error"}]}` (`line` null for the whole file).'
    ),
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for a person to read."},
        "errors": {
            "type": "array",
            "description": "A bad import file: every bad line (up to IMPORT_MAX_REPORTED_ERRORS).",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer", "nullable": True},
                    "error": {"type": "string"},
                },
                "required": ["line", "error"],
            },
        },
    },
    "additionalProperties": {
        "description": "Per parameter or field: its messages (nested for a list's items).",
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}],
    },
}


# drf-spectacular's extension classes register in an unannotated __init_subclass__.
class ErrorOutSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """ErrorOut's schema as the API answers: detail, per-field lists, or an import's lines."""

    target_class = "annotate.schema.ErrorOut"

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        return ERROR_SCHEMA


PATH_PARAMETERS = {
    "slug": "The project's slug.",
    "assignment_id": "The lease (assignment) id, from next.",
    "batch_id": "The batch's id.",
    "job_id": "The background export's id.",
    "generation_id": "The generation job's id.",
    "judging_id": "The AI judging job's id.",
    "probe_id": "The consistency probe's id, as the next endpoint handed it out (`kind` probe).",
}


def describe_path_parameters(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """A postprocessing hook: the URL's own parameters, described once for every operation
    (an id is a whole number: its URL pattern takes digits only)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and not parameter.get("description"):
                    parameter["description"] = PATH_PARAMETERS.get(parameter["name"], "")
                if parameter.get("in") == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"].update({"minimum": 0, "maximum": MAX_ID})
    return result


ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# The answers any operation may give, besides its own: who may not, what is not there, too many.
COMMON_ERRORS = {
    "401": "No credentials, or bad ones.",
    "403": "You may not do this here.",
    "429": "Too many requests for this token (API_TOKEN_RATE): retry after Retry-After.",
}


def declare_errors(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """A postprocessing hook: every operation's error answers, in the one error schema: 401,
    403 and 429 everywhere; 404 where the path names something; 400 where there are parameters
    or a body; 413 where there is a body (annotate.middleware)."""
    result.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            errors = dict(COMMON_ERRORS)
            if any(p.get("in") == "path" for p in parameters):
                errors["404"] = "No such thing, or not yours to see."
            if any(p.get("in") == "query" for p in parameters) or "requestBody" in operation:
                errors["400"] = "A bad parameter or field: its name and what is wrong."
            if "requestBody" in operation:
                errors["413"] = "The body is larger than the limit."
            for code, description in errors.items():
                answer = responses.setdefault(code, {"description": description})
                content = answer.setdefault("content", {})
                declared = content.get("application/json", {}).get("schema")
                if declared in (None, ERROR_REF):
                    content["application/json"] = {"schema": ERROR_REF}
                else:  # the operation's own answer (a failed batch), or an error
                    content["application/json"] = {"schema": {"anyOf": [declared, ERROR_REF]}}
    return result
