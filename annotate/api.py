"""REST plumbing shared by every app: domain errors become clear JSON errors, never a 500."""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.authtoken.models import Token
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from annotate.cache import count_hit, count_undo
from annotate.errors import ApplicationError
from annotate.schema import MAX_ID

logger = logging.getLogger(__name__)


def request_user(request: Request) -> User:
    """The authenticated user of an API request (the default permission requires one)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user


# The database connection failed (it was closed, PostgreSQL restarted or terminated it) or the
# transaction could not go on (a deadlock, a serialization failure, SQLite locked): nothing the
# client can fix, and a retry may well succeed. Whatever the transaction wrote was rolled back,
# unless the connection broke after COMMIT was sent, so the answer does not claim either way:
# retried with the same idempotency_key, a judgment is stored once.
DB_CONNECTION_ERRORS = (OperationalError, InterfaceError)
DB_RETRY_MESSAGE = (
    "The database connection failed while handling this request. Send it again: a judgment "
    "sent again with the same idempotency_key is stored once."
)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every ApplicationError answers its own status, body and headers (annotate.errors), so
    this module knows no app's exceptions; a broken database connection answers 503; the rest
    is DRF's."""
    if isinstance(exc, ApplicationError):
        set_rollback()
        return Response(exc.as_dict(), status=exc.status, headers=exc.headers())
    if isinstance(exc, DB_CONNECTION_ERRORS):
        logger.warning("API: database error, answered 503 (%s: %s)", type(exc).__name__, exc)
        return Response(
            {"detail": DB_RETRY_MESSAGE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    return drf_exception_handler(exc, context)


class IdCursorPagination(CursorPagination):
    """Cursor pagination in id order for the list endpoints: stable while rows are added (a
    page never repeats or skips a row), and as cheap on the thousandth page as on the first.
    `?page_size=` up to 1,000; the answer is {"next", "previous", "results"}."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        """`?page_size=`: empty or absent, the default; else 1 to 1,000, or a 400 naming it
        (DRF's own would quietly ignore a bad value)."""
        value = request.query_params.get(self.page_size_query_param)
        if value in (None, ""):
            return self.page_size
        text = str(value)
        if not is_whole(text) or len(text) > 6 or not 1 <= int(text) <= self.max_page_size:
            message = f"Must be a whole number from 1 to {self.max_page_size}."
            raise exceptions.ValidationError({self.page_size_query_param: [message]})
        return int(text)


def list_page(
    request: Request, view: Any, queryset: Any, row: Any = None, *, rows: Any = None
) -> Response:
    """One page of `queryset`, each item made by `row(item)`, or the whole page's items by
    `rows(items)` (which may then read what they need for the page in one query)."""
    paginator = IdCursorPagination()
    page: list[Any] = paginator.paginate_queryset(queryset, request, view=view) or []
    return paginator.get_paginated_response(rows(page) if rows else [row(item) for item in page])


def is_whole(text: str) -> bool:
    """Digits 0-9 only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def int_param(request: Request, name: str) -> int | None:
    """A whole-number query parameter, or None; a 400 naming it otherwise."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    text = str(value)
    if not is_whole(text) or len(text) > 19 or int(text) > MAX_ID:
        raise exceptions.ValidationError({name: [f"Must be a whole number from 0 to {MAX_ID}."]})
    return int(text)


class TokenRateThrottle(UserRateThrottle):
    """Limits what one API token may ask per period (API_TOKEN_RATE, e.g. "3000/min"), counted
    in the shared cache (Redis in production), so that one script cannot crowd out the others.
    The browser's session requests are not counted: an annotator at work is not a script.

    The count is a sliding window, estimated from two counters: the requests of this period
    (periods of the rate's length, from the epoch) and of the one before, weighed by how much
    of it the sliding window still covers. A request costs one round trip to Redis (add one
    here, read the one before) and a refused one a second (it takes its hit back, so that
    refused requests do not count). DRF's own throttle kept every request's time in one list,
    read and written whole on every request: up to API_TOKEN_RATE floats each way. With Redis
    gone nothing is counted and every request passes (annotate/cache.py).
    """

    scope = "token"
    # Set by DRF from the rate (read only when there is one).
    num_requests: int
    duration: int
    # This request's: its time and the two counters after its hit.
    now: float
    current: int
    previous: int

    def get_rate(self) -> str | None:
        return str(settings.API_TOKEN_RATE) or None

    def allow_request(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, Token) or self.rate is None:
            return True
        base = self.get_cache_key(request, view)
        if base is None:
            return True
        self.now = self.timer()
        period = int(self.now // self.duration)
        key = token_throttle_key(base, period)
        counts = count_hit(self.cache, key, token_throttle_key(base, period - 1), 2 * self.duration)
        if counts is None:
            return True  # the cache cannot count now: fail open
        self.current, self.previous = counts
        if self._estimate(self.now, self.current) <= self.num_requests:
            return True
        count_undo(self.cache, key)
        self.current -= 1
        return False

    def _covered(self, now: float) -> float:
        """How much of the period before this one the window ending at `now` still covers."""
        return 1.0 - (now % self.duration) / self.duration

    def _estimate(self, now: float, current: int) -> float:
        return self.previous * self._covered(now) + current

    def wait(self) -> float | None:
        """Seconds until one more request fits in the window (the Retry-After)."""
        room = self.num_requests - 1  # the requests the window may hold before the next one
        if room < 0:
            return None  # a rate of 0: never
        into = (self.now % self.duration) / self.duration
        if self.current <= room:
            # Still in this period: the previous one's share must fall to room - current.
            if self.previous <= 0:
                return 0.0
            need = 1.0 - (room - self.current) / self.previous
            return max(0.0, (need - into) * self.duration)
        # Not before the next period, whose previous is this one's count.
        need = max(0.0, 1.0 - room / self.current)
        return (1.0 - into + need) * self.duration


def token_throttle_key(base: str, period: int) -> str:
    """The cache key of one period's counter of TokenRateThrottle (`base` is DRF's
    "throttle_token_<user id>")."""
    return f"{base}:{period}"
