"""The audit sample: a fixed pseudo-random share of a project's ordinary comparisons
(Project.audit_rate) that every assignment policy fills to the full overlap first and that never
stops early (batches.queue_order), so that agreement measured on it is the agreement of a
uniform sample, whatever the policy spends the rest of the votes on.

Membership is a hash of the comparison's id against the rate, not a fresh draw: the same
comparison stays in the sample whenever it is marked again, and raising the rate only adds to
the sample (lowering it only takes away). Marked when a batch's comparisons are written (the
import, generation) and again, for the whole project, when the rate changes.
"""

from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Mod
from django.db.models.lookups import LessThan

from apps.batches.models import Batch, Comparison
from apps.projects.models import Project

# Knuth's multiplicative hash: id * HASH_MULTIPLIER mod 2**32 spreads consecutive ids evenly
# over [0, 2**32). The product stays below 2**63 for ids below 3.4e9.
HASH_MULTIPLIER = 2654435761
HASH_RANGE = 2**32


def audit_threshold(rate: float) -> int:
    """The hash below which a comparison is in the sample at `rate` (0..1)."""
    return round(min(max(rate, 0.0), 1.0) * HASH_RANGE)


def in_audit_sample(comparison_id: int, rate: float) -> bool:
    """Whether comparison `comparison_id` belongs to the sample at `rate` (what
    audit_sample_mark stores), for tests and for code that holds an id rather than a row."""
    return (comparison_id * HASH_MULTIPLIER) % HASH_RANGE < audit_threshold(rate)


def _membership(threshold: int) -> Q:
    """The sample at `threshold` (audit_threshold) as a filter on Comparison."""
    audit_hash = Mod(F("id") * Value(HASH_MULTIPLIER), Value(HASH_RANGE))
    return Q(LessThan(audit_hash, Value(threshold)))


def audit_sample_mark(
    *, project: Project, batch: Batch | None = None, prompt_id: int | None = None
) -> int:
    """Stores which of the project's ordinary comparisons (or one batch's, or one prompt's) are
    in the audit sample at the project's audit_rate; gold items never are. Returns how many rows
    changed.

    The caller recomputes completion where votes exist already (queue.overlap_changed): a
    comparison that joins the sample after it stopped early reopens for the rest of its overlap.
    """
    comparisons: QuerySet[Comparison] = Comparison.objects.filter(project=project)
    if batch is not None:
        comparisons = comparisons.filter(batch=batch)
    if prompt_id is not None:
        comparisons = comparisons.filter(prompt_id=prompt_id)
    threshold = audit_threshold(project.audit_rate)
    if threshold <= 0:
        return comparisons.filter(is_audit=True).update(is_audit=False)
    member = _membership(threshold)
    joined = comparisons.filter(member, is_gold=False, is_audit=False).update(is_audit=True)
    left = comparisons.filter(~member | Q(is_gold=True), is_audit=True).update(is_audit=False)
    return joined + left
