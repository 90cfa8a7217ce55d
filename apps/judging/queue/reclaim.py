"""Expired leases give their slots back to the pool."""

from collections import Counter
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.models import Batch, Comparison
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import backend
from apps.judging.queue.policy import RECLAIM_LIMIT


def leases_reclaim_expired(
    *, project_id: int | None = None, now: datetime | None = None, limit: int = RECLAIM_LIMIT
) -> int:
    """Returns expired leases' slots to the pool. Safe to run from many processes at once."""
    with transaction.atomic():
        return leases_reclaim(project_id=project_id, now=now or timezone.now(), limit=limit)


def leases_reclaim(*, project_id: int | None, now: datetime, limit: int) -> int:
    """Reclaims up to `limit` expired leases; the caller holds the transaction.

    Queries: on PostgreSQL 1 (annotate_reclaim, sql_pick); elsewhere 1 when nothing has
    expired, 4 otherwise.
    """
    if backend.postgresql():
        (reclaimed,) = backend.fetchone(
            "SELECT annotate_reclaim(%s, %s, %s)", [project_id, now, limit]
        )
        return int(reclaimed)
    expired = Assignment.objects.filter(status=AssignmentStatus.OPEN, expires_at__lte=now)
    if project_id is not None:
        expired = expired.filter(project_id=project_id)
    rows = list(
        expired.order_by("expires_at")
        .select_for_update(skip_locked=True)
        .values_list("id", "comparison_id")[:limit]
    )
    if not rows:
        return 0
    Assignment.objects.filter(id__in=[row[0] for row in rows]).update(
        status=AssignmentStatus.EXPIRED, closed_at=now
    )
    # Lock the comparisons in id order, so that two sweeps never deadlock. Gold leases took no
    # slot, so only ordinary comparisons get one back.
    gold = dict(
        Comparison.objects.filter(id__in={comparison_id for _, comparison_id in rows})
        .order_by("id")
        .select_for_update()
        .values_list("id", "is_gold")
    )
    per_comparison = Counter(comparison_id for _, comparison_id in rows if not gold[comparison_id])
    by_amount: dict[int, list[int]] = {}
    for comparison_id, amount in per_comparison.items():
        by_amount.setdefault(amount, []).append(comparison_id)
    for amount, ids in by_amount.items():
        Comparison.objects.filter(id__in=ids).update(lease_count=F("lease_count") - amount)
    return len(rows)


def batch_leases_reclaim(*, batch: Batch, by: User | AnonymousUser) -> int:
    """Returns every expired lease of the batch's project to the pool now, without waiting for
    the beat sweep (the admin's "reclaim expired leases"), and records it in the audit log.
    Returns how many leases were reclaimed."""
    total = 0
    while reclaimed := leases_reclaim_expired(project_id=batch.project_id):
        total += reclaimed
    audit_record(
        actor=by,
        action=AuditAction.LEASES_RECLAIMED,
        project=batch.project,
        target=batch,
        details={"reclaimed": total},
    )
    return total
