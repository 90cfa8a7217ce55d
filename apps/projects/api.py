from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import request_user
from annotate.schema import ErrorOut, MeOut
from apps.exports.formats import formats_for
from apps.projects.models import (
    GRADES,
    MAX_REPEAT_RATE,
    AssignmentPolicy,
    Membership,
    Project,
    Role,
    Scheme,
    honeypot_problem,
    repeat_problem,
)
from apps.projects.selectors import project_for_lead
from apps.projects.services import NOT_ADDABLE, member_to_add, membership_add, project_create


class CriterionOut(serializers.Serializer[Any]):
    name = serializers.CharField(help_text="The key of the criterion in judgments and exports.")
    description = serializers.CharField(allow_blank=True, help_text="Shown to annotators.")


class GradeOut(serializers.Serializer[Any]):
    value = serializers.IntegerField(
        help_text="-3..3 as shown on screen (negative: the left response is better). Exports "
        "and judgments orient `strength` to the candidates: positive when candidate A is better."
    )
    description = serializers.CharField(help_text="The label annotators see.")


class ProjectSerializer(serializers.ModelSerializer[Project]):
    """A project and everything that says how to read its data: the scheme, its criteria and
    grade scale, which answers were allowed, the flags, skip reasons and rationale rule, the
    overlap and assignment policy, and the export formats that apply."""

    criteria = serializers.SerializerMethodField(
        help_text="Criteria judged each on its own beside the overall answer (pairwise and "
        "graded projects; empty for listwise)."
    )
    grade_scale = serializers.SerializerMethodField(
        help_text="Graded projects: the scale's values and labels; null otherwise."
    )
    flags = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Flags an annotator may raise on a comparison (judgments' `flags`).",
    )
    skip_reasons = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Reasons an annotator may give for skipping.",
    )
    export_formats = serializers.SerializerMethodField(
        help_text="The export formats that apply to this project's scheme (the `format` values "
        "of the export endpoints that can have rows in it)."
    )

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "scheme",
            "criteria",
            "grade_scale",
            "overlap",
            "allow_tie",
            "allow_both_bad",
            "flags",
            "rationale",
            "rationale_min_length",
            "show_models",
            "show_ai_suggestion",
            "guidelines",
            "guideline_version",
            "lease_seconds",
            "policy",
            "skip_reasons",
            "annotator_cap",
            "stop_confidence",
            "gold_rate",
            "gold_min_accuracy",
            "gold_min_answers",
            "honeypot_rate",
            "audit_rate",
            "repeat_rate",
            "repeat_after",
            "export_formats",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CriterionOut(many=True))
    def get_criteria(self, project: Project) -> list[dict[str, str]]:
        return [
            {"name": str(c["name"]), "description": str(c.get("description", ""))}
            for c in project.criteria
        ]

    @extend_schema_field(GradeOut(many=True, allow_null=True))
    def get_grade_scale(self, project: Project) -> list[dict[str, Any]] | None:
        if project.scheme != Scheme.GRADED:
            return None
        return [{"value": value, "description": label} for value, label in GRADES]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_export_formats(self, project: Project) -> list[str]:
        return formats_for(project.scheme)


class ProjectCreateInput(serializers.Serializer[Any]):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    overlap = serializers.IntegerField(min_value=1, max_value=50, default=3)
    allow_tie = serializers.BooleanField(default=True)
    allow_both_bad = serializers.BooleanField(default=True)
    guidelines = serializers.CharField(allow_blank=True, default="", trim_whitespace=False)
    lease_seconds = serializers.IntegerField(min_value=10, default=600)
    policy = serializers.ChoiceField(choices=AssignmentPolicy.choices, default="breadth_first")
    skip_reasons = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=50, required=False
    )
    annotator_cap = serializers.IntegerField(min_value=1, allow_null=True, default=None)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    gold_min_accuracy = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    gold_min_answers = serializers.IntegerField(min_value=1, default=10)
    stop_confidence = serializers.FloatField(
        min_value=0.5, max_value=0.999, allow_null=True, default=None
    )
    honeypot_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    audit_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    repeat_rate = serializers.FloatField(min_value=0.0, max_value=MAX_REPEAT_RATE, default=0.0)
    repeat_after = serializers.IntegerField(min_value=1, default=20)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The rule is the model's (Project.clean), here before anything is built.
        if problem := honeypot_problem(
            scheme=Project._meta.get_field("scheme").get_default(),
            gold_rate=attrs.get("gold_rate", 0.0),
            honeypot_rate=attrs.get("honeypot_rate", 0.0),
        ):
            raise serializers.ValidationError({"honeypot_rate": [problem]})
        if problem := repeat_problem(
            scheme=Project._meta.get_field("scheme").get_default(),
            repeat_rate=attrs.get("repeat_rate", 0.0),
        ):
            raise serializers.ValidationError({"repeat_rate": [problem]})
        return attrs

    def validate_slug(self, value: str) -> str:
        if value != value.lower():
            raise serializers.ValidationError("Use lowercase letters, digits and -.")
        if Project.objects.filter(slug=value).exists():
            raise serializers.ValidationError("A project with this slug already exists.")
        return value


class ProjectListCreate(APIView):
    """GET: the projects you belong to (all, for staff). POST: create one (staff only)."""

    @extend_schema(
        summary="Your projects",
        description="The projects you belong to, as annotator or lead; every project for staff.",
        responses={200: ProjectSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        projects = Project.objects.all()
        if not request.user.is_staff:
            projects = projects.filter(memberships__user=request_user(request))
        return Response(ProjectSerializer(projects, many=True).data)

    @extend_schema(
        summary="Create a project",
        description="Staff only. Further settings (scheme, criteria, ...) are set in the admin.",
        request=ProjectCreateInput,
        responses={201: ProjectSerializer, 400: ErrorOut, 403: ErrorOut},
    )
    def post(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can create projects.")
        data = ProjectCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(created_by=request_user(request), **data.validated_data)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


# An AI judge's account (role "ai") is made with its judge (apps.judges), never added here.
PERSON_ROLES = [(role.value, role.label) for role in (Role.ANNOTATOR, Role.LEAD)]


class MembershipInput(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=PERSON_ROLES)


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username")
    project = serializers.CharField(source="project.slug")

    class Meta:
        model = Membership
        fields = ["project", "username", "role", "pseudonym", "created_at"]


class MemberAdd(APIView):
    """POST: add an existing user to the project as annotator or lead (staff and its leads)."""

    @extend_schema(
        summary="Add a member",
        description=(
            "Staff and the project's leads: an existing user joins as annotator or lead (or "
            "changes role). The answer carries their pseudonym. A lead may add only an account "
            "that is neither staff nor in a project they do not lead; any other username gets "
            "the same 400 as an unknown one. A lead cannot demote themself (400)."
        ),
        request=MembershipInput,
        responses={201: MembershipSerializer, 400: ErrorOut, 404: ErrorOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        data = MembershipInput(data=request.data)
        data.is_valid(raise_exception=True)
        by = request_user(request)
        user = member_to_add(project=project, username=data.validated_data["username"], by=by)
        if user is None:
            raise serializers.ValidationError({"username": [NOT_ADDABLE]})
        membership = membership_add(
            project=project, user=user, role=data.validated_data["role"], by=by
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class Me(APIView):
    """GET: who you are. Also the cheapest authenticated request, the floor of the stack."""

    @extend_schema(
        summary="Who you are",
        description="Also the cheapest authenticated request: the benchmarks' floor.",
        responses={200: MeOut},
    )
    def get(self, request: Request) -> Response:
        user = request_user(request)
        return Response({"username": user.get_username(), "is_staff": user.is_staff})
