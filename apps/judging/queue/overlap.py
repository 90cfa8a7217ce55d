"""A project's overlap changed: each comparison's completion follows it."""

from django.db import transaction

from apps.batches.models import Comparison
from apps.batches.queue_order import complete_condition
from apps.projects.models import Project


def overlap_changed(*, project: Project) -> int:
    """Recomputes which comparisons are complete after the project's overlap changed (the
    caller has saved it).

    A lower overlap completes comparisons at once; a higher one reopens them to the queue.
    Returns how many comparisons changed state.
    """
    complete = complete_condition(overlap=project.overlap)
    comparisons = Comparison.objects.filter(project=project)
    with transaction.atomic():
        closed = comparisons.filter(complete, complete=False).update(complete=True)
        reopened = comparisons.filter(~complete, complete=True).update(complete=False)
    return closed + reopened
