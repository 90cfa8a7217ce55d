"""What batches hang on the lower apps' signals, connected once by BatchesConfig.ready()."""

from typing import Any

from apps.batches.policy_follow import comparison_policy_follow_after_change
from apps.projects.signals import policy_changed


def follow_policy_change(*, project_id: int, using: str, **kwargs: Any) -> None:
    """A project's policy changed: its comparisons follow (now, or after the commit in chunks)."""
    comparison_policy_follow_after_change(project_id=project_id, using=using)


def connect() -> None:
    policy_changed.connect(follow_policy_change, dispatch_uid="batches.follow_policy_change")
