"""Expired leases give their slots back to the pool."""

from collections import Counter
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.batches.models import Batch
from apps.judging.queue import backend, sql_lease, sql_reclaim, statements
from apps.judging.queue.policy import RECLAIM_LIMIT


def leases_reclaim_expired(
    *, project_id: int | None = None, now: datetime | None = None, limit: int = RECLAIM_LIMIT
) -> int:
    """Returns expired leases' slots to the pool. Safe to run from many processes at once."""
    with transaction.atomic():
        return leases_reclaim(project_id=project_id, now=now or timezone.now(), limit=limit)


def leases_reclaim(*, project_id: int | None, now: datetime, limit: int) -> int:
    """Reclaims up to `limit` expired leases; the caller holds the transaction.

    The statements are sql_reclaim's: on PostgreSQL 1 query (annotate_reclaim, which embeds
    them); elsewhere the same, 1 when nothing has expired, 2 otherwise.
    """
    if backend.postgresql():
        (reclaimed,) = backend.fetchone(
            "SELECT annotate_reclaim(%s, %s, %s)", [project_id, now, limit]
        )
        return int(reclaimed)
    lock = sql_reclaim.SKIP_LOCKED if connection.features.has_select_for_update_skip_locked else ""
    expired = statements.run_all(
        sql_reclaim.expire_sql(lock), {"now": now, "project": project_id, "limit": limit}
    )
    # annotate_reclaim's loop: each comparison's slots back, in id order.
    freed = Counter(comparison_id for (comparison_id,) in expired)
    statements.run_many(
        sql_lease.SLOT_FREE,
        [{"comparison": comparison, "freed": n} for comparison, n in sorted(freed.items())],
    )
    return len(expired)


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
