"""The one place that asks which database serves a connection.

PostgreSQL is what production runs; SQLite is the zero-setup default (`make run`, the SQLite leg of
the tests). Code that does a thing differently on PostgreSQL (the queue's PL/pgSQL functions,
COPY for imports, a lock timeout, ANALYZE after a bulk insert) asks here, so that a search for
this function finds every such difference. The queue chooses its backend once, in
apps/judging/queue/backend.py.
"""

from django.db import DEFAULT_DB_ALIAS, connections


def postgresql(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the database `using` is PostgreSQL."""
    return connections[using].vendor == "postgresql"
