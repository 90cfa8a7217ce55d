from collections.abc import Sequence
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import int_param, is_whole, list_page, request_user
from annotate.schema import (
    BATCH,
    CURSOR,
    NEXT_DETAIL_HELP,
    NEXT_HELP,
    NEXT_REASON_HELP,
    PAGE_SIZE,
    AssignmentOut,
    ErrorOut,
    JudgmentConflictOut,
    JudgmentIn,
    JudgmentNextOut,
    JudgmentRow,
    ProbeAnswerOut,
    UndoOut,
    page_of,
)
from apps.batches.models import Candidate
from apps.exports.cursor import HEADER as NEXT_SINCE
from apps.exports.cursor import NEXT_SINCE_HEADER, format_since, next_since
from apps.exports.options import SOURCES
from apps.exports.selectors import (
    JUDGMENT_CREATED_AT,
    JUDGMENT_GOLD_CORRECT,
    JUDGMENT_ID,
    judgment_rows_of,
    judgment_values,
)
from apps.judging.answers import on_screen
from apps.judging.models import Assignment, Judgment, RepeatProbe, Skip
from apps.judging.probes import probe_answer, probe_next, probe_next_after, probe_skip
from apps.judging.queue import (
    NEXT_REASONS,
    IdempotencyConflict,
    JudgmentError,
    NextAfter,
    SubmitResult,
    assignment_next,
    assignment_next_after,
    assignment_next_in,
    assignment_skip,
    judgment_submit,
    judgment_undo,
)
from apps.projects.models import Membership
from apps.projects.selectors import Pseudonyms, membership_for, project_for_lead


def _side(candidate: Candidate) -> dict[str, str]:
    return {"id": candidate.external_id, "text": candidate.text}


def _shown(
    kind: str, item_id: int, shown: Assignment | RepeatProbe, expires_at: str | None
) -> dict[str, Any]:
    """What the annotator is shown of a lease or a probe (both load comparison.prompt, left and
    right), as the next endpoint answers it."""
    return {
        "kind": kind,
        "id": item_id,
        "comparison": shown.comparison_id,
        "prompt": shown.comparison.prompt.content,
        "left": _side(shown.left),
        "right": _side(shown.right),
        "expires_at": expires_at,
    }


def assignment_payload(assignment: Assignment) -> dict[str, Any]:
    payload = _shown("assignment", assignment.pk, assignment, assignment.expires_at.isoformat())
    shown = assignment.shown
    if shown is not None:  # listwise: every response, in the order shown
        payload["candidates"] = [_side(c) for c in shown]
    return payload


def probe_payload(probe: RepeatProbe) -> dict[str, Any]:
    """A consistency probe as the next endpoint hands it to a client that asked for probes: an
    assignment's shape, `kind` "probe", its id the probe's, no expiry (it waits for you)."""
    return _shown("probe", probe.pk, probe, None)


NEXT_VALUES = {"1": True, "true": True, "0": False, "false": False}
NEXT_PARAMETER = OpenApiParameter(
    "next",
    {"type": "string", "enum": list(NEXT_VALUES)},
    description=(
        "`1` (or `true`): answer with your next assignment too, as the next endpoint would "
        "give it, in `next` (null when there is none, `next_reason` and `next_detail` saying "
        "why), taken once what you sent is stored. `0`, `false` or left out: no `next`."
    ),
    required=False,
)


PROBES_PARAMETER = OpenApiParameter(
    "probes",
    {"type": "string", "enum": list(NEXT_VALUES)},
    description=(
        "`1` (or `true`): your client handles consistency probes, so the next item may be "
        "one (`kind`: `probe`, answered at `/projects/<slug>/probes/<id>/judgment/`). `0`, "
        "`false` or left out: only assignments."
    ),
    required=False,
)


def _flag(request: Request, name: str, message: str) -> bool:
    """A yes/no query parameter: False when left out; a 400 naming it for anything but 1,
    true, 0 or false. Read before anything is stored."""
    value = request.query_params.get(name)
    if value is None:
        return False
    if value not in NEXT_VALUES:
        raise ValidationError({name: [message]})
    return NEXT_VALUES[value]


def wants_next(request: Request) -> bool:
    """The `next` query parameter: whether the answer should carry the next assignment."""
    return _flag(
        request,
        "next",
        "Use 1 or true to get your next assignment in the answer, 0 or false not to.",
    )


def wants_probes(request: Request) -> bool:
    """The `probes` query parameter: whether the client may be handed a consistency probe."""
    return _flag(
        request,
        "probes",
        "Use 1 or true if your client answers consistency probes, 0 or false if not.",
    )


def _after_fields(after: NextAfter) -> dict[str, Any]:
    return {
        "next": None if after.assignment is None else assignment_payload(after.assignment),
        "next_reason": after.reason or None,
        "next_detail": after.detail or None,
    }


def _probe_fields(probe: RepeatProbe) -> dict[str, Any]:
    return {"next": probe_payload(probe), "next_reason": None, "next_detail": None}


def next_fields(
    request: Request,
    assignment_id: int,
    *,
    probes: bool,
    membership: Membership | None = None,
) -> dict[str, Any]:
    """`next`, `next_reason` and `next_detail` for an answer that asked for them (see
    assignment_next_after: the judgment or skip has committed; this cannot undo it; a submit
    may bring the membership as it left it). With `probes=1` a due consistency probe comes
    first, as on the next endpoint."""
    annotator = request_user(request)
    if probes:
        probe = probe_next_after(assignment_id=assignment_id, annotator=annotator)
        if probe is not None:
            return _probe_fields(probe)
    return _after_fields(
        assignment_next_after(
            assignment_id=assignment_id, annotator=annotator, membership=membership
        )
    )


class AssignmentNext(APIView):
    """POST: your open lease in the project, or a new one. 204 when nothing is left for you."""

    @extend_schema(
        summary="Your next comparison",
        description=(
            "Your open lease in the project if you hold one (a reload gets the same comparison "
            "back), or a new one chosen by the project's policy. 204: nothing left for you; "
            "403: a cap or the gold rule stops you, and says why.\n\n"
            "With `?probes=1` it may be a consistency probe instead (`kind` is `probe`): a "
            "comparison you judged before, shown again sides swapped, which the project's lead "
            "asked for (its repeat rate). Show it as any other; answer it at "
            "`/projects/<slug>/probes/<id>/judgment/` or pass it at `.../skip/`. Without the "
            "parameter you are never handed one."
        ),
        parameters=[PROBES_PARAMETER],
        request=None,
        responses={200: AssignmentOut, 204: None, 403: ErrorOut, 404: ErrorOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        membership = membership_for(user=request.user, slug=slug)
        if wants_probes(request):
            probe = probe_next(project=membership.project, annotator=request_user(request))
            if probe is not None:
                return Response(probe_payload(probe))
        assignment = assignment_next(
            project=membership.project, annotator=request_user(request), membership=membership
        )
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(assignment_payload(assignment))


JUDGMENT_FIELDS = (
    "choice",
    "strength",
    "criteria",
    "flags",
    "ranking",
    "rationale",
    "idempotency_key",
    "duration_ms",
)


def judgment_fields(data: Any) -> dict[str, Any]:
    """The judgment's fields from the request body (JSON, or a form), as judgment_submit takes
    them; it checks every one (answers.py), so there is no serializer here: on the hot path one
    cost as much as the rest of the request's Python. Other keys are ignored."""
    if not hasattr(data, "get"):
        raise JudgmentError("The body must be a JSON object.")
    fields = {name: data.get(name) for name in JUDGMENT_FIELDS if name in data}
    if hasattr(data, "getlist") and "flags" in data:  # a form: flags may repeat
        fields["flags"] = data.getlist("flags")
    for name in ("rationale", "idempotency_key"):
        if fields.get(name) is None:
            fields.pop(name, None)
    duration = fields.get("duration_ms")
    if isinstance(duration, str) and is_whole(duration) and len(duration) < 11:
        fields["duration_ms"] = int(duration)
    strength = fields.get("strength")
    if isinstance(strength, str) and is_whole(strength.lstrip("-")) and len(strength) < 4:
        fields["strength"] = int(strength)
    return fields


_DATETIME = serializers.DateTimeField()


def _ranking_external(ranking: list[list[int]] | None) -> list[list[str]] | None:
    """A stored ranking (candidate ids) with the responses' imported ids instead."""
    if ranking is None:
        return None
    ids = [pk for group in ranking for pk in group]
    external = dict(Candidate.objects.filter(pk__in=ids).values_list("id", "external_id"))
    return [[external[pk] for pk in group] for group in ranking]


def _submitted_payload(result: SubmitResult) -> dict[str, Any]:
    return judgment_payload(
        result.judgment,
        left_is_a=result.left_is_a,
        chosen_external_id=result.chosen_external_id,
    )


def judgment_payload(
    judgment: Judgment, *, left_is_a: bool, chosen_external_id: str | None = None
) -> dict[str, Any]:
    """The judgment as the API returns it. A plain function: a ModelSerializer built its fields
    anew for every response, which cost as much as the rest of the request's Python.
    `chosen_external_id` is loaded from the judgment when not given."""
    chosen_id = chosen_external_id
    if chosen_id is None and judgment.chosen_id is not None:
        chosen_id = judgment.chosen.external_id  # type: ignore[union-attr]
    overall = on_screen({"option": None, "strength": judgment.strength}, left_is_a=left_is_a)[
        "strength"
    ]
    return {
        "id": judgment.pk,
        "assignment": judgment.assignment_id,
        "comparison": judgment.comparison_id,
        "choice": judgment.choice,
        "chosen_id": chosen_id,
        # On the screen's terms of this lease, as sent: strength < 0 favours the left response.
        "strength": overall,
        "criteria": {
            name: on_screen(stored, left_is_a=left_is_a)
            for name, stored in judgment.criteria.items()
        },
        "flags": judgment.flags,
        "ranking": _ranking_external(judgment.ranking),
        "guideline_version": judgment.guideline_version,
        "rationale": judgment.rationale,
        "duration_ms": judgment.duration_ms,
        "idempotency_key": judgment.idempotency_key,
        "created_at": _DATETIME.to_representation(judgment.created_at),
    }


class JudgmentCreate(APIView):
    """POST your judgment of an assignment. A retry with the same idempotency_key returns 200."""

    @extend_schema(
        summary="Judge your assignment",
        description=(
            "The answer on the screen's terms, as the project's scheme asks: `choice` "
            "(pairwise), `strength` (graded) or `ranking` (listwise), with `criteria`, `flags` "
            "and a `rationale` per the project. 201 stored; 200 a retry with the same "
            "idempotency key and the same answer; 400 names what breaks the scheme; 403 when "
            "you may no longer judge here (removed from the project, account deactivated, "
            "stopped by the gold rule): nothing is stored and the lease is released; 409 when "
            "it cannot be taken (judged, undone, a lapsed lease on a full comparison, a cap "
            "reached), or when the idempotency key was used with another answer: then "
            "`judgment` is the one stored under it, which stands.\n\n"
            "With `?next=1` a 200 or 201 also carries your next assignment (`next`, as the "
            "next endpoint's 200 body, or null with `next_reason`: `none_left` for its 204, "
            "`blocked` for its 403, `unavailable` when the lease could not be taken; "
            "`next_detail` says it in words): one request per judgment. The judgment is "
            "stored first and stands whatever becomes of the next lease. A retry with the "
            "same idempotency key gets your open lease again, the one the first answer "
            "carried while it is unanswered. Refusals (4xx) carry no `next`."
        ),
        parameters=[NEXT_PARAMETER, PROBES_PARAMETER],
        request=JudgmentIn,
        responses={
            200: JudgmentNextOut,
            201: JudgmentNextOut,
            400: ErrorOut,
            403: ErrorOut,
            404: ErrorOut,
            409: JudgmentConflictOut,
        },
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        with_next, probes = wants_next(request), wants_probes(request)
        try:
            result = judgment_submit(
                assignment_id=assignment_id,
                annotator=request_user(request),
                with_membership=with_next,
                **judgment_fields(request.data),
            )
        except IdempotencyConflict as exc:
            return Response(
                {"detail": str(exc), "judgment": _submitted_payload(exc.stored)},
                status=status.HTTP_409_CONFLICT,
            )
        body = _submitted_payload(result)
        if with_next:  # the judgment has committed: whatever happens next, it stands
            body.update(
                next_fields(request, assignment_id, probes=probes, membership=result.membership)
            )
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


class SkipInput(serializers.Serializer[Any]):
    # Empty only where the project has no skip reasons (the service says so otherwise).
    reason = serializers.CharField(max_length=200, allow_blank=True)
    note = serializers.CharField(
        allow_blank=True, required=False, default="", max_length=10_000, trim_whitespace=False
    )


class SkipSerializer(serializers.ModelSerializer[Skip]):
    class Meta:
        model = Skip
        fields = ["id", "assignment", "comparison", "reason", "note", "created_at"]


class SkipNextOut(SkipSerializer):
    """What a skip answers: the skip, and with `?next=1` the next assignment (the schema's)."""

    next = AssignmentOut(allow_null=True, required=False, help_text=NEXT_HELP)
    next_reason = serializers.ChoiceField(
        choices=NEXT_REASONS, allow_null=True, required=False, help_text=NEXT_REASON_HELP
    )
    next_detail = serializers.CharField(allow_null=True, required=False, help_text=NEXT_DETAIL_HELP)

    class Meta(SkipSerializer.Meta):
        fields = [*SkipSerializer.Meta.fields, "next", "next_reason", "next_detail"]


class AssignmentSkip(APIView):
    """POST a skip of your assignment with a reason (one of the project's, or "other" + note)."""

    @extend_schema(
        summary="Skip your assignment",
        description=(
            "With one of the project's skip reasons, or `other` and a note. The comparison is "
            "never offered to you again. 201 skipped; 200 the same skip again; 403 when you "
            "may no longer work here (removed from the project, account deactivated, stopped "
            "by the gold rule): nothing is stored and the lease is released; 409 if judged. "
            "With `?next=1` a 200 or 201 also carries your next assignment, as a judgment's "
            "does (`next`, `next_reason`, `next_detail`)."
        ),
        parameters=[NEXT_PARAMETER, PROBES_PARAMETER],
        request=SkipInput,
        responses={
            200: SkipNextOut,
            201: SkipNextOut,
            400: ErrorOut,
            403: ErrorOut,
            404: ErrorOut,
            409: ErrorOut,
        },
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        with_next, probes = wants_next(request), wants_probes(request)
        data = SkipInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = assignment_skip(
            assignment_id=assignment_id, annotator=request_user(request), **data.validated_data
        )
        body = dict(SkipSerializer(result.skip).data)
        if with_next:  # the skip has committed
            body.update(next_fields(request, assignment_id, probes=probes))
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


# What a probe's answer may carry: the overall answer and what the project asks beside it. A
# probe is not a judgment: no idempotency key (a second answer is a 409, the first standing), no
# duration, no ranking (listwise projects have no probes).
PROBE_FIELDS = ("choice", "strength", "criteria", "flags", "rationale")


def _probe_answered(
    request: Request, membership: Membership, probe: RepeatProbe, *, with_next: bool, probes: bool
) -> Response:
    answered_at = probe.answered_at
    assert answered_at is not None  # probe_answer and probe_skip set it
    body: dict[str, Any] = {
        "id": probe.pk,
        "comparison": probe.comparison_id,
        "answered_at": _DATETIME.to_representation(answered_at),
    }
    if with_next:  # the answer has committed
        annotator = request_user(request)
        after = probe_next(project=membership.project, annotator=annotator) if probes else None
        if after is not None:
            body.update(_probe_fields(after))
        else:
            body.update(
                _after_fields(assignment_next_in(membership=membership, annotator=annotator))
            )
    # A retry of what the probe holds already changed nothing: 200, as a judgment's retry.
    return Response(body, status=status.HTTP_200_OK if probe.replayed else status.HTTP_201_CREATED)


PROBE_NEXT_HELP = (
    "With `?next=1` the answer also carries your next item (`next`, `next_reason`, "
    "`next_detail`), as a judgment's does; with `probes=1` too, it may be another probe."
)


class ProbeJudgment(APIView):
    """POST your answer to a consistency probe the next endpoint handed you (`kind` probe)."""

    @extend_schema(
        summary="Answer a consistency probe",
        description=(
            "A comparison you judged before, shown again sides swapped (the project's repeat "
            "rate); the next endpoint hands it out with `?probes=1`. Answer it as you would an "
            "assignment, on the screen's terms of this showing: `choice` (pairwise) or "
            "`strength` (graded), with `criteria`, `flags` and a `rationale` as the project "
            "asks. It is never a vote: it only tells the project how consistent answers are. "
            "201 stored; 200 and the same body for the same answer sent again (a retry after "
            "a lost response: nothing changes); 400 names what breaks the scheme (nothing is "
            "stored); 404 when no probe of yours with this id waits in this project; 409 when "
            "it was answered otherwise or passed already (the first answer stands). "
            + PROBE_NEXT_HELP
        ),
        parameters=[NEXT_PARAMETER, PROBES_PARAMETER],
        request=JudgmentIn,
        responses={
            201: ProbeAnswerOut,
            200: ProbeAnswerOut,
            400: ErrorOut,
            404: ErrorOut,
            409: ErrorOut,
        },
    )
    def post(self, request: Request, slug: str, probe_id: int) -> Response:
        with_next, probes = wants_next(request), wants_probes(request)
        membership = membership_for(user=request.user, slug=slug)
        fields = judgment_fields(request.data)
        probe = probe_answer(
            probe_id=probe_id,
            project=membership.project,
            annotator=request_user(request),
            **{name: fields[name] for name in PROBE_FIELDS if name in fields},
        )
        return _probe_answered(request, membership, probe, with_next=with_next, probes=probes)


class ProbeSkip(APIView):
    """POST: pass on a consistency probe; it is closed unanswered and counts for nothing."""

    @extend_schema(
        summary="Pass on a consistency probe",
        description=(
            "The probe is closed unanswered and counts for nothing. 201 passed; 200 and the "
            "same body when it was passed already (a retry); 404 when no probe of yours with "
            "this id waits in this project; 409 when it was answered already. " + PROBE_NEXT_HELP
        ),
        parameters=[NEXT_PARAMETER, PROBES_PARAMETER],
        request=None,
        responses={201: ProbeAnswerOut, 200: ProbeAnswerOut, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, slug: str, probe_id: int) -> Response:
        with_next, probes = wants_next(request), wants_probes(request)
        membership = membership_for(user=request.user, slug=slug)
        probe = probe_skip(
            probe_id=probe_id, project=membership.project, annotator=request_user(request)
        )
        return _probe_answered(request, membership, probe, with_next=with_next, probes=probes)


class JudgmentUndo(APIView):
    """POST: take back your last judgment in the project. 200 with the comparison's new lease
    (same sides) and `undone`, what you had answered; 409 when it can no longer be changed."""

    @extend_schema(
        summary="Undo your last judgment",
        description=(
            "Your last judgment in the project comes back to be answered anew, on the same "
            "sides: while its comparison is open, and always within 5 minutes. 403 when the "
            "gold rule has stopped you (your judgments stay as they are); 409 when there is "
            "nothing to undo, or it is too late."
        ),
        request=None,
        responses={200: UndoOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        membership = membership_for(user=request.user, slug=slug)
        result = judgment_undo(project=membership.project, annotator=request_user(request))
        undone = judgment_payload(result.undone, left_is_a=result.left_is_a)
        return Response({**assignment_payload(result.assignment), "undone": undone})


def judgment_list_row(values: Sequence[Any], row: dict[str, Any]) -> dict[str, Any]:
    """A row of the judgment list: the `judgments` export's row (`row`, built from `values`, a
    `judgment_values` tuple) with the judgment's id and gold_correct, and its time as the API
    writes times. In the order the list has always had."""
    return {
        "id": values[JUDGMENT_ID],
        "comparison_id": row["comparison_id"],
        "prompt_id": row["prompt_id"],
        "annotator": row["annotator"],
        "left_id": row["left_id"],
        "right_id": row["right_id"],
        "choice": row["choice"],
        "chosen_id": row["chosen_id"],
        "candidate_a_id": row["candidate_a_id"],
        "strength": row["strength"],
        "criteria": row["criteria"],
        "flags": row["flags"],
        "ranking": row["ranking"],
        "guideline_version": row["guideline_version"],
        "rationale": row["rationale"],
        "duration_ms": row["duration_ms"],
        "gold_correct": values[JUDGMENT_GOLD_CORRECT],
        "source": row["source"],
        "created_at": _DATETIME.to_representation(values[JUDGMENT_CREATED_AT]),
    }


class JudgmentList(APIView):
    """GET the project's judgments, cursor-paginated in id order, annotators by pseudonym: the
    rows of the `judgments` export. Filters: `batch=<id>`, `since=<ISO time>` (judged at or
    after it), `gold=true` to include gold items (left out by default, as in exports),
    `sources=human|ai|all` (people's by default, as in exports). Each page
    names the next pull's `since` in X-Next-Since: take the first page's."""

    @extend_schema(
        summary="List the project's judgments",
        description="Staff and the project's leads. Annotators appear by pseudonym only.",
        parameters=[
            BATCH,
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description="Only judgments made at or after this ISO 8601 time.",
                required=False,
            ),
            OpenApiParameter(
                "gold",
                bool,
                description="true: include gold items (left out by default, as in exports).",
                required=False,
            ),
            OpenApiParameter(
                "sources",
                str,
                enum=list(SOURCES),
                description="Whose judgments: human (people's, the default), ai (AI judges') "
                "or all, as in exports.",
                required=False,
            ),
            CURSOR,
            PAGE_SIZE,
            NEXT_SINCE_HEADER,
        ],
        responses={200: page_of("JudgmentPage", JudgmentRow(many=True)), 400: ErrorOut},
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        judgments = Judgment.objects.filter(
            comparison__project=project, invalidated_at__isnull=True
        )
        if (batch := int_param(request, "batch")) is not None:
            judgments = judgments.filter(batch_id=batch)
        if (since := request.query_params.get("since")) is not None:
            moment = parse_datetime(str(since))
            if moment is None:
                raise ValidationError({"since": ["Use an ISO 8601 time, with its offset."]})
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment, timezone.get_current_timezone())
            judgments = judgments.filter(created_at__gte=moment)
        gold = request.query_params.get("gold", "false")
        if gold not in ("true", "false"):
            raise ValidationError({"gold": ["Use true or false."]})
        if gold == "false":
            judgments = judgments.filter(comparison__is_gold=False)
        sources = request.query_params.get("sources", "human")
        if sources not in SOURCES:
            raise ValidationError({"sources": [f"Use one of {', '.join(SOURCES)}."]})
        judgments = judgments.filter(source__in=SOURCES[sources])
        pseudonym = Pseudonyms(project)

        def rows(page: list[Any]) -> list[dict[str, Any]]:
            return [
                judgment_list_row(values, row)
                for values, row in zip(page, judgment_rows_of(page, pseudonym), strict=True)
            ]

        upcoming = next_since()
        response = list_page(request, self, judgment_values(judgments, named=True), rows=rows)
        response[NEXT_SINCE] = format_since(upcoming)
        return response
