from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import request_user
from annotate.schema import ErrorOut, MeOut
from apps.projects.models import AssignmentPolicy, Membership, Project, Role
from apps.projects.selectors import project_for_lead
from apps.projects.services import NOT_ADDABLE, member_to_add, membership_add, project_create


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "overlap",
            "allow_tie",
            "allow_both_bad",
            "guidelines",
            "lease_seconds",
            "policy",
            "skip_reasons",
            "annotator_cap",
            "gold_rate",
            "gold_min_accuracy",
            "gold_min_answers",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class ProjectCreateInput(serializers.Serializer):
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


class MembershipInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MembershipSerializer(serializers.ModelSerializer):
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
