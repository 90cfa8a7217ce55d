"""What the OpenAPI schema says of bodies and answers the views build by hand.

The hot-path views (next, submit) build their JSON with plain functions, not serializers (see
apps/judging/api.py); these serializers only describe those shapes to drf-spectacular. A test
(tests/test_schema.py) checks that every operation and parameter in the schema is described.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

BATCH = OpenApiParameter(
    "batch", int, description="Only this batch of the project (its id).", required=False
)
PAGE_SIZE = OpenApiParameter(
    "page_size", int, description="Rows a page: 100 by default, at most 1,000.", required=False
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


class CandidateShown(serializers.Serializer):
    id = serializers.CharField(help_text="The response's id, as imported.")
    text = serializers.CharField(help_text="The response, Markdown.")


class AssignmentOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="The lease (assignment) id: submit to it.")
    comparison = serializers.IntegerField()
    prompt = serializers.JSONField(help_text="A string, or a list of {role, content} messages.")
    left = CandidateShown(help_text="The response shown on the left.")
    right = CandidateShown(help_text="The response shown on the right.")
    candidates = CandidateShown(
        many=True,
        required=False,
        help_text="Listwise projects: every response, in the order shown.",
    )
    expires_at = serializers.DateTimeField(help_text="When the lease lapses.")


class JudgmentIn(serializers.Serializer):
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


class JudgmentOut(serializers.Serializer):
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


class UndoOut(AssignmentOut):
    undone = JudgmentOut(help_text="What you had answered; it is no longer stored.")


class MeOut(serializers.Serializer):
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


class ComparisonRow(serializers.Serializer):
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


class JudgmentRow(serializers.Serializer):
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
    created_at = serializers.DateTimeField()


class ErrorOut(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for a person to read.")


class JudgmentConflictOut(ErrorOut):
    judgment = JudgmentOut(
        required=False,
        help_text=(
            "Only when the idempotency key was already used with another answer: the judgment "
            "stored under it, which stands."
        ),
    )


PATH_PARAMETERS = {
    "slug": "The project's slug.",
    "assignment_id": "The lease (assignment) id, from next.",
    "batch_id": "The batch's id.",
    "job_id": "The background export's id.",
}


def describe_path_parameters(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """A postprocessing hook: the URL's own parameters, described once for every operation."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and not parameter.get("description"):
                    parameter["description"] = PATH_PARAMETERS.get(parameter["name"], "")
    return result
