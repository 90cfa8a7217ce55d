from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from apps.projects.models import GuidelineVersion, Membership, Project, Role


class ProjectError(Exception):
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
    """Creates a project. `settings` are further Project fields (policy, gold_rate, ...)."""
    project = Project(
        **settings,
        slug=slug,
        name=name,
        overlap=overlap,
        allow_tie=allow_tie,
        allow_both_bad=allow_both_bad,
        guidelines=guidelines,
        lease_seconds=lease_seconds,
        created_by=created_by,
    )
    project.full_clean()
    try:
        with transaction.atomic():
            project.save()
            GuidelineVersion.objects.create(
                project=project,
                version=project.guideline_version,
                text=guidelines,
                created_by=created_by,
            )
    except IntegrityError:
        raise ProjectError(f"A project with slug {slug!r} already exists.") from None
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
    project.guidelines, project.guideline_version = text, current.guideline_version
    return True


def membership_add(*, project: Project, user: User, role: str) -> Membership:
    """Adds a user to a project, or changes the role of one who is already a member."""
    if role not in Role.values:
        raise ProjectError(f"role must be one of {', '.join(Role.values)}.")
    membership, created = Membership.objects.get_or_create(
        project=project, user=user, defaults={"role": role}
    )
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def project_overlap_changed(*, project: Project) -> int:
    """Recomputes which comparisons are complete after the project's overlap changed.

    A lower overlap completes comparisons at once; a higher one reopens them to the queue.
    Returns how many comparisons changed state.
    """
    from apps.batches.models import Comparison

    ordinary = Comparison.objects.filter(project=project, is_gold=False)
    closed = ordinary.filter(complete=False, judgment_count__gte=project.overlap).update(
        complete=True
    )
    reopened = ordinary.filter(complete=True, judgment_count__lt=project.overlap).update(
        complete=False
    )
    return closed + reopened
