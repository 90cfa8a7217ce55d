"""A project's overlap or stopping confidence changed: each comparison's completion follows it."""

from apps.batches.policy_follow import queue_settings_changed
from apps.projects.models import Project


def overlap_changed(*, project: Project) -> int | None:
    """Recomputes which comparisons are complete after the project's overlap, its stopping
    confidence (stop_confidence, and so stop_margin) or its audit sample changed (the caller
    has saved it). Returns how many comparisons changed state, or None for a project larger
    than POLICY_FOLLOW_INLINE comparisons, whose follow task does it after the commit in short
    chunks (apps.batches.policy_follow.queue_settings_changed).

    A lower overlap, or stopping turned on or made less demanding, completes comparisons; a
    higher overlap, or stopping turned off or made more demanding, reopens them to the queue.
    """
    return queue_settings_changed(project_id=project.pk)
