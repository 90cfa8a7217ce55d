"""Keeping the queue's tables fast: VACUUM of the rows every lease and judgment leaves dead.

Every lease taken and every judgment stored updates its comparison row (lease_count,
judgment_count, the rank) and its assignment row (closed): on PostgreSQL each update leaves a
dead row version, and a dead entry in each index the update touched. The pick walks the head
of those indexes (sql_pick) and the reclaim the open leases (sql_reclaim), so they step over
every dead entry until VACUUM removes it. Measured with bench/queue.py at 120,000 comparisons
and 32 annotators (one request a judgment), with no VACUUM the pick's own time grew from 0.6 ms
to 7.9 ms within three minutes and judgments/s fell from 193 to 93; with this job (and the seed
vacuumed once, as below) it stayed at 240-252, the pick at 0.3-0.35 ms.

PostgreSQL's autovacuum would do this, but only once a fifth of a table is dead by default
(200,000 rows of a project of 1M comparisons), and not at all where it is turned off. So the
beat job `vacuum-queue` (QUEUE_VACUUM_SECONDS) runs queue_tables_vacuum, which vacuums each of
these tables once it has QUEUE_VACUUM_MIN_DEAD dead rows, or as many inserted since its last
VACUUM (a fresh import); `manage.py vacuum_queue` runs it by
hand or from cron. Other databases need none of it: queue_tables_vacuum does nothing there.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from annotate import db
from apps.batches.models import Comparison
from apps.judging.models import Assignment

logger = logging.getLogger(__name__)

# The tables a lease or a judgment updates, in the order they are vacuumed.
QUEUE_TABLES = (Comparison._meta.db_table, Assignment._meta.db_table)


class VacuumInTransaction(RuntimeError):
    """VACUUM cannot run inside a transaction block; the caller opened one."""


@dataclass(frozen=True)
class TableUpkeep:
    """One queue table as queue_tables_vacuum found it: its dead rows (PostgreSQL's statistics,
    which lag by up to a second), whether it was vacuumed, and how long that took."""

    table: str
    dead: int
    vacuumed: bool
    seconds: float = 0.0
    inserted: int = 0  # rows inserted since the table's last VACUUM


def queue_tables_vacuum(
    *, min_dead: int | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[TableUpkeep]:
    """VACUUMs each of QUEUE_TABLES that has at least `min_dead` dead rows, or as many rows
    inserted since its last VACUUM (default QUEUE_VACUUM_MIN_DEAD), and reports every table,
    vacuumed or not. VACUUM takes no lock that leases or judgments wait for; SKIP_LOCKED
    passes over a table someone holds
    exclusively (a migration) rather than wait, and TRUNCATE false leaves the empty pages at a
    table's end in place (giving them back takes an ACCESS EXCLUSIVE lock, and a queue's tables
    grow again at once). On any database but PostgreSQL: [].

    Must run outside a transaction (autocommit, as a task or a command runs): raises
    VacuumInTransaction otherwise. A table the app's role may not vacuum (it neither owns it nor
    is a superuser), or whose VACUUM fails, is logged and reported as not vacuumed."""
    if not db.postgresql(using):
        return []
    connection = connections[using]
    if connection.in_atomic_block:
        raise VacuumInTransaction("VACUUM cannot run inside a transaction (atomic block).")
    threshold = settings.QUEUE_VACUUM_MIN_DEAD if min_dead is None else min_dead
    with connection.cursor() as cursor:
        # VACUUM by a role that neither owns the table nor is a superuser only warns and does
        # nothing: asked first, so that the report does not claim it was done.
        cursor.execute(
            "SELECT s.relname, s.n_dead_tup, s.n_ins_since_vacuum, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "OR pg_has_role(c.relowner, 'MEMBER') "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)",
            [list(QUEUE_TABLES)],
        )
        found = {
            table: (int(dead), int(inserted), bool(owned))
            for table, dead, inserted, owned in cursor.fetchall()
        }
    report = []
    for table in QUEUE_TABLES:
        count, inserted, owned = found.get(table, (0, 0, True))
        # Rows inserted since the last VACUUM count too, as autovacuum counts them (PostgreSQL
        # 13's insert threshold): a fresh import is vacuumed once, which sets its pages
        # all-visible. bench/queue.py judged 160-226 judgments/s a window when its seed was
        # first vacuumed during the run, 240-252 when before it.
        if count < threshold and inserted < threshold:
            report.append(TableUpkeep(table, count, vacuumed=False, inserted=inserted))
            continue
        if not owned:
            logger.warning("VACUUM of %s skipped: the database role does not own it", table)
            report.append(TableUpkeep(table, count, vacuumed=False, inserted=inserted))
            continue
        started = time.perf_counter()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"VACUUM (SKIP_LOCKED, TRUNCATE false) {connection.ops.quote_name(table)}"
                )
        except DatabaseError:
            logger.warning("VACUUM of %s failed", table, exc_info=True)
            report.append(TableUpkeep(table, count, vacuumed=False, inserted=inserted))
            continue
        report.append(TableUpkeep(table, count, True, time.perf_counter() - started, inserted))
    return report
