import functools
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as UserModel
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404

from annotate.rows import columns, loaded_from_json, loaded_from_row
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
    """The user's membership in the project, with the project, in one query; otherwise 404.

    It opens every request for work, so it is one plain SQL statement: building the same join
    through the ORM cost more Python than the query cost the database.
    """
    if not user.is_authenticated:
        raise Http404("No such project.")
    with connection.cursor() as cursor:
        cursor.execute(_membership_sql(), [slug, user.pk])
        row = cursor.fetchone()
    if row is None:
        raise Http404("No such project.")
    return membership_from_row(row)


def membership_from_row(row: tuple[Any, ...]) -> Membership:
    """A membership and its project from one row of `columns(Membership) + columns(Project)`."""
    split = len(Membership._meta.concrete_fields)
    membership = loaded_from_row(Membership, row[:split])
    membership.project = loaded_from_row(Project, row[split:])
    return membership


def membership_from_json(value: str | list[dict[str, Any]]) -> Membership:
    """A membership and its project from `[to_jsonb(membership), to_jsonb(project)]`, as
    annotate_submit reports them (Django has psycopg read jsonb as its text)."""
    member, project = json.loads(value) if isinstance(value, str) else value
    membership = loaded_from_json(Membership, member)
    membership.project = loaded_from_json(Project, project)
    return membership


@functools.cache
def _membership_sql() -> str:
    quote = connection.ops.quote_name
    # Only names from the models are formatted in; the values are bound.
    return (
        f"SELECT {', '.join(columns(Membership, 'm') + columns(Project, 'p'))} "  # noqa: S608
        f"FROM {quote(Membership._meta.db_table)} m "
        f"JOIN {quote(Project._meta.db_table)} p ON p.id = m.project_id "
        "WHERE p.slug = %s AND m.user_id = %s"
    )


def pseudonyms_for(project: Project) -> dict[int, str]:
    """user id -> the pseudonym that names them in this project's exports. An AI judge's
    account is named by its judge, "ai:<name>": it is no person (its votes are in an export
    only when asked for, with `sources=ai` or `all`)."""
    return {
        user_id: f"ai:{judge}" if role == Role.AI and judge else pseudonym
        for user_id, pseudonym, role, judge in Membership.objects.filter(
            project=project
        ).values_list("user_id", "pseudonym", "role", "user__ai_judge__name")
    }


class Pseudonyms:
    """Names annotators in exports by their per-project pseudonym, never by username."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.known = pseudonyms_for(project)

    def __call__(self, user_id: int) -> str:
        name = self.known.get(user_id)
        if name is None:
            # A former member: derive a stable name that does not reveal the account.
            digest = hmac.new(
                settings.SECRET_KEY.encode(),
                f"{self.project.pk}:{user_id}".encode(),
                hashlib.sha256,
            ).hexdigest()
            name = self.known[user_id] = "ann-x" + digest[:9]
        return name
