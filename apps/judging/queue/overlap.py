"""A project's overlap or stopping confidence changed: each comparison's completion follows it."""

from django.db import transaction

from apps.batches.models import Comparison
from apps.batches.queue_order import complete_condition
from apps.projects.models import Project


def overlap_changed(*, project: Project) -> int:
    """Recomputes which comparisons are complete after the project's overlap or its stopping
    confidence (stop_confidence, and so stop_margin) changed (the caller has saved it).

    A lower overlap, or stopping turned on or made less demanding, completes comparisons at
    once; a higher overlap, or stopping turned off or made more demanding, reopens them to the
    queue. Returns how many comparisons changed state.
    """
    complete = complete_condition(overlap=project.overlap, margin=project.stop_margin)
    comparisons = Comparison.objects.filter(project=project)
    with transaction.atomic():
        closed = comparisons.filter(complete, complete=False).update(complete=True)
        reopened = comparisons.filter(~complete, complete=True).update(complete=False)
    return closed + reopened
