"""The audit log: one call records one lead or staff action."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Model

from apps.audit.models import AuditAction, AuditEvent

if TYPE_CHECKING:  # for the hint only: audit is the bottom layer and imports no app at run time
    from apps.projects.models import Project


def audit_record(
    *,
    actor: User | AnonymousUser | None,
    action: AuditAction | str,
    project: "Project | None" = None,
    target: Model | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Records that `actor` did `action` (an AuditAction) on `target`, in `project`.

    `details` is any JSON-serialisable dict (dates and decimals are fine): for a change, the
    convention is {"field": {"old": ..., "new": ...}}. It runs in the caller's transaction, so
    an action that is rolled back leaves no record of having happened.
    """
    if action not in AuditAction.values:
        raise ValueError(f"unknown audit action {action!r}")
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=str(action),
        project=project,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        # dict(items()) also flattens a QueryDict to its last values.
        details=dict(details.items()) if details else {},
    )


def changes_of(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"field": {"old": ..., "new": ...}} for every key whose value differs."""
    return {
        key: {"old": old.get(key), "new": new.get(key)}
        for key in new
        if old.get(key) != new.get(key)
    }
