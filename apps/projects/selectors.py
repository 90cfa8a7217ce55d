from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as UserModel
from django.db.models import QuerySet
from django.http import Http404

from apps.projects.models import Membership, Project, Role

User = UserModel | AnonymousUser


def projects_led_by(user: User) -> QuerySet[Project]:
    """Projects whose data this user may manage: all for staff, their own for leads."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user, memberships__role=Role.LEAD)


def is_lead_anywhere(user: User) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and Membership.objects.filter(user=user, role=Role.LEAD).exists()
    )


def project_for_lead(*, user: User, slug: str) -> Project:
    """The project, if this user may manage it; otherwise 404, so its existence is not revealed."""
    project = projects_led_by(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    return project


def project_for_member(*, user: User, slug: str) -> Project:
    """The project, if this user is a member of it (any role); otherwise 404."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    project = Project.objects.filter(slug=slug, memberships__user=user).first()
    if project is None:
        raise Http404("No such project.")
    return project


def membership_for(*, user: User, slug: str) -> Membership:
    """The user's membership in the project, with the project, in one query; otherwise 404."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    membership = (
        Membership.objects.select_related("project").filter(project__slug=slug, user=user).first()
    )
    if membership is None:
        raise Http404("No such project.")
    return membership


def pseudonyms_for(project: Project) -> dict[int, str]:
    """user id -> the pseudonym that names them in this project's exports."""
    return dict(Membership.objects.filter(project=project).values_list("user_id", "pseudonym"))
