"""Django's PostgreSQL backend, with a health check that is not a round trip on every request.

With CONN_HEALTH_CHECKS, Django checks a persistent connection (a `SELECT 1`) before each
request or task reuses it, so that a connection the server closed since (a restart, an idle
timeout) is replaced instead of failing the request. Under load that is one more round trip on
every request: 8.6% of a web worker's time in `bench/queue.py` (py-spy, one request a judgment),
as much as the judgment's own statement.

Here a connection that has just served a request without an error (less than
DATABASE_HEALTH_CHECK_AFTER seconds ago) is trusted without the check. A server that went away
inside that window fails one request a process (DatabaseErrorMiddleware answers 503 with
Retry-After, as for a connection lost mid-request, which no check can prevent), and the
connection is closed at that request's end; a connection idle for longer is checked as Django
does. 0 checks before every reuse, as Django's own backend.
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    # time.monotonic() when the connection last served a request or task without an error.
    served_at: float | None = None

    def close_if_unusable_or_obsolete(self) -> None:
        # Called as each request (or task) starts and ends. At its end, health_check_done says
        # the connection was used during it (checked or trusted before its first query).
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self.served_at = time.monotonic()
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            self.served_at = None

    def close_if_health_check_failed(self) -> None:
        fresh = float(getattr(settings, "DATABASE_HEALTH_CHECK_AFTER", 0))
        if (
            fresh > 0
            and self.connection is not None
            and self.served_at is not None
            and time.monotonic() - self.served_at < fresh
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def close(self) -> None:
        super().close()
        self.served_at = None
