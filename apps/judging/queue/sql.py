"""The DDL of the queue's PostgreSQL functions, (re)installed by every `migrate`
(apps.judging.apps): they hold no data, so replacing them is always safe.

Next and submit, what an annotator waits on, were a dozen ORM statements per cycle, each a round
trip built and parsed by Python, plus BEGIN and COMMIT. As functions, each is one statement in
autocommit: one round trip and its own transaction. PL/pgSQL runs every statement inside on a
fresh snapshot under READ COMMITTED, as a Django transaction's statements were, and the locks
are taken in one order everywhere (an assignment row, then its comparison), so that no two
transactions wait on each other in a cycle.
"""

from apps.judging.queue.sql_next import NEXT_FUNCTION
from apps.judging.queue.sql_pick import pick_function
from apps.judging.queue.sql_reclaim import RECLAIM_FUNCTION
from apps.judging.queue.sql_submit import FITS_FUNCTION, SUBMIT_FUNCTION

FUNCTION_NAMES = (
    "annotate_pick",
    "annotate_reclaim",
    "annotate_next",
    "annotate_fits",
    "annotate_submit",
)


def functions_sql() -> str:
    """The DDL that (re)creates the queue's functions: dropped first, so that a signature may
    change, in one transaction with the creation."""
    drops = "".join(f"DROP FUNCTION IF EXISTS {name};\n" for name in reversed(FUNCTION_NAMES))
    return drops + "".join(
        (pick_function(), RECLAIM_FUNCTION, NEXT_FUNCTION, FITS_FUNCTION, SUBMIT_FUNCTION)
    )
