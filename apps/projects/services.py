"""Projects and their members. Every write here records itself in the audit log, whichever
door it came through (admin, API, a command, a task): the doors pass the actor as `by` (or
`created_by`), and None means the system (a command or task acting on no one's behalf)."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction

from annotate.errors import BadRequest
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.projects.models import GuidelineVersion, Membership, Project, Role
from apps.projects.selectors import projects_led_by

Actor = User | AnonymousUser

# What a lead is told about a username that does not exist and about one they may not add:
# the same words, so that the answer does not tell the two apart.
NOT_ADDABLE = "No user with this username that you can add."

# Bookkeeping fields, not settings: the audit record of a new project leaves them out.
_NOT_SETTINGS = {
    "id",
    "guidelines",
    "guideline_version",
    "stop_margin",
    "policy_version",
    "policy_followed",
    "policy_changed_at",
    "created_by",
    "created_at",
}


class ProjectError(BadRequest):
    """A request about a project that cannot be carried out; the message is for the user."""


def project_create(
    *,
    slug: str,
    name: str,
    created_by: User | None = None,
    overlap: int = 3,
    allow_tie: bool = True,
    allow_both_bad: bool = True,
    guidelines: str = "",
    lease_seconds: int = 600,
    **settings: Any,
) -> Project:
    """Creates a project. `settings` are further Project fields (policy, gold_rate, ...).

    `created_by` is the actor: see `project_insert` for what follows from it.
    """
    project = Project(
        **settings,
        slug=slug,
        name=name,
        overlap=overlap,
        allow_tie=allow_tie,
        allow_both_bad=allow_both_bad,
        guidelines=guidelines,
        lease_seconds=lease_seconds,
    )
    return project_insert(project=project, created_by=created_by)


def project_insert(*, project: Project, created_by: User | None) -> Project:
    """Saves a new project built elsewhere (the admin's form builds one), with its first
    guidelines version, and records its creation with every setting.

    A creator who is not staff becomes its lead: otherwise they could not reach it again.
    """
    project.created_by = created_by
    project.full_clean()
    try:
        with transaction.atomic():
            project.save()
            GuidelineVersion.objects.create(
                project=project,
                version=project.guideline_version,
                text=project.guidelines,
                created_by=created_by,
            )
            audit_record(
                actor=created_by,
                action=AuditAction.PROJECT_CREATED,
                project=project,
                target=project,
                details={
                    field.name: getattr(project, field.name)
                    for field in Project._meta.concrete_fields
                    if field.name not in _NOT_SETTINGS
                },
            )
            if created_by is not None and not created_by.is_staff:
                _membership_set(project=project, user=created_by, role=Role.LEAD, by=created_by)
    except IntegrityError:
        raise ProjectError(f"A project with slug {project.slug!r} already exists.") from None
    return project


def project_guidelines_set(*, project: Project, text: str, by: User | None = None) -> bool:
    """Sets the guidelines; a change makes a new version, which new leases are given under.

    Returns whether anything changed. Judgments keep the version their lease was given under.
    """
    with transaction.atomic():
        current = Project.objects.select_for_update().get(pk=project.pk)
        if current.guidelines == text:
            return False
        current.guidelines = text
        current.guideline_version += 1
        current.save(update_fields=["guidelines", "guideline_version"])
        GuidelineVersion.objects.create(
            project=current, version=current.guideline_version, text=text, created_by=by
        )
        audit_record(
            actor=by,
            action=AuditAction.GUIDELINES_CHANGED,
            project=current,
            target=current,
            details={"version": current.guideline_version, "characters": len(text)},
        )
    project.guidelines, project.guideline_version = text, current.guideline_version
    return True


def member_addable(*, user: User, by: Actor | None) -> bool:
    """Whether `by` may make `user` a new member of a project they lead.

    Staff and the system may add anyone. A lead may add an account that is neither staff nor a
    member of any project they do not lead: an account already in another lead's project joins
    theirs only through staff, or the lead would gain a hold on it (see `may_manage`).
    """
    if by is None or by.is_staff:
        return True
    if user.is_staff:
        return False
    led = projects_led_by(by).values("pk")
    return not Membership.objects.filter(user=user).exclude(project__in=led).exists()


def member_to_add(*, project: Project, username: str, by: Actor | None) -> User | None:
    """The account `by` names to add to (or change the role of in) the project, or None when
    there is no such account or it is not one they may add: a door answers both alike."""
    user = User.objects.filter(username=username).first()
    if user is None:
        return None
    if Membership.objects.filter(project=project, user=user).exists():
        return user
    return user if member_addable(user=user, by=by) else None


def membership_problem(
    *,
    project: Project,
    user: User,
    old_role: str | None,
    new_role: str | None,
    by: Actor | None,
    creating: bool = False,
) -> str:
    """Why `by` may not move `user` from `old_role` to `new_role` in the project (None: not a
    member; as new_role: removed), or "" when they may. `creating`: the project is being
    created by `by`, who will lead it (see `project_insert`).

    A lead acts only on projects they lead, adds only accounts they may add, and never demotes
    or removes themself: so a project a lead acts on always keeps a lead, the last one
    included. Staff and the system may do anything.
    """
    if by is None or by.is_staff:
        return ""
    if creating:
        old_role = Role.LEAD if user.pk == by.pk else None
    elif not projects_led_by(by).filter(pk=project.pk).exists():
        return f"You do not lead {project}."
    if old_role is None:
        return "" if member_addable(user=user, by=by) else NOT_ADDABLE
    if old_role == Role.LEAD and new_role != Role.LEAD and user.pk == by.pk:
        what = "remove yourself from" if new_role is None else "step down as a lead of"
        return (
            f"You cannot {what} {project}: you would lose access to it. Another lead of "
            "the project, or staff, can."
        )
    return ""


def _locked(project: Project) -> None:
    """Locks the project's row until the transaction ends: membership changes of one project
    are checked and made one at a time (two leads demoting each other cannot both succeed)."""
    Project.objects.select_for_update().filter(pk=project.pk).first()


def membership_add(
    *, project: Project, user: User, role: str, by: Actor | None = None
) -> Membership:
    """Adds a user to a project, or changes the role of one who is already a member; recorded
    as a member added or a role changed. Raises ProjectError when `by` may not
    (`membership_problem`)."""
    return _membership_set(project=project, user=user, role=role, by=by, check=True)


def _membership_set(
    *, project: Project, user: User, role: str, by: Actor | None, check: bool = False
) -> Membership:
    if role not in Role.values:
        raise ProjectError(f"role must be one of {', '.join(Role.values)}.")
    with transaction.atomic():
        _locked(project)
        membership = Membership.objects.filter(project=project, user=user).first()
        old_role = membership.role if membership is not None else None
        if check and (
            problem := membership_problem(
                project=project, user=user, old_role=old_role, new_role=role, by=by
            )
        ):
            raise ProjectError(problem)
        details: dict[str, Any] = {"user": user.get_username()}
        if membership is None:
            membership = Membership.objects.create(project=project, user=user, role=role)
            action, details["role"] = AuditAction.MEMBERSHIP_ADDED, role
        elif membership.role != role:
            membership.role = role
            membership.save(update_fields=["role"])
            action, details["role"] = AuditAction.MEMBERSHIP_CHANGED, {"old": old_role, "new": role}
        else:
            return membership
        audit_record(actor=by, action=action, project=project, target=user, details=details)
    return membership


def membership_remove(*, project: Project, user: User, by: Actor | None = None) -> bool:
    """Removes a member from a project (their judgments stay); recorded as a member removed.
    Returns False when they were not a member. Raises ProjectError when `by` may not."""
    with transaction.atomic():
        _locked(project)
        membership = Membership.objects.filter(project=project, user=user).first()
        if membership is None:
            return False
        if problem := membership_problem(
            project=project, user=user, old_role=membership.role, new_role=None, by=by
        ):
            raise ProjectError(problem)
        membership.delete()
        audit_record(
            actor=by,
            action=AuditAction.MEMBERSHIP_REMOVED,
            project=project,
            target=user,
            details={"user": user.get_username(), "role": membership.role},
        )
    return True
