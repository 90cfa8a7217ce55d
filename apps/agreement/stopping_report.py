"""What adaptive stopping saved: the comparisons that stopped early and the judgments they were
spared, per project and per batch.

A comparison stopped early when it is complete with fewer valid votes than the project's
overlap: by the queue's complete rule (apps.batches.queue_order) only a lead reaching the stop
margin completes it then. It saved overlap - its valid votes judgments. The overlap is the
project's as it is now (a later change of it moves the figures, as it moves completion). Gold
items never stop and are left out. One query.
"""

from typing import Any

from django.db.models import Count, Q, Sum

from apps.batches.models import Comparison
from apps.projects.models import Project

STOPPING_MEANING = (
    "adaptive stopping: comparisons closed before their overlap because one side led by the "
    "margin the stopping confidence asks for (each vote taken as right 80% of the time), and "
    "the judgments that spared: the overlap less the valid votes each received"
)


def stopping_report(*, project: Project, batch_id: int | None = None) -> dict[str, Any]:
    """{"meaning", "confidence", "margin", "stopped_early", "judgments_saved", "per_batch":
    [{"batch", "comparisons", "stopped_early", "judgments_saved"}, ...] by batch id}; of one
    batch when `batch_id` is given. One query."""
    early = Q(complete=True, judgment_count__lt=project.overlap)
    comparisons = Comparison.objects.filter(project=project, is_gold=False)
    if batch_id is not None:
        comparisons = comparisons.filter(batch_id=batch_id)
    rows = (
        comparisons.values("batch_id")
        .annotate(
            comparisons=Count("id"),
            stopped=Count("id", filter=early),
            votes=Sum("judgment_count", filter=early, default=0),
        )
        .order_by("batch_id")
    )
    per_batch = [
        {
            "batch": row["batch_id"],
            "comparisons": row["comparisons"],
            "stopped_early": row["stopped"],
            "judgments_saved": row["stopped"] * project.overlap - row["votes"],
        }
        for row in rows
    ]
    return {
        "meaning": STOPPING_MEANING,
        "confidence": project.stop_confidence,
        "margin": project.stop_margin,
        "stopped_early": sum(row["stopped_early"] for row in per_batch),
        "judgments_saved": sum(row["judgments_saved"] for row in per_batch),
        "per_batch": per_batch,
    }
