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

from annotate.broker import RETRY_AFTER_SECONDS, BrokerUnavailable
from annotate.schema import MAX_ID
from apps.batches.import_format import ImportFormatError
from apps.judging.queue import (
    AnnotatorBlocked,
    AssignmentNotFound,
    JudgmentConflict,
    JudgmentError,
)
from apps.projects.services import ProjectError

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


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
    if isinstance(exc, ImportFormatError):
        errors = [error.as_dict() for error in exc.errors]
        if exc.total > len(errors):
            errors.append({"line": None, "error": f"... and {exc.total - len(errors)} more errors"})
        return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ProjectError | JudgmentError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, JudgmentConflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, AnnotatorBlocked):
        return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, AssignmentNotFound):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DB_CONNECTION_ERRORS):
        logger.warning("API: database error, answered 503 (%s: %s)", type(exc).__name__, exc)
        return Response(
            {"detail": DB_RETRY_MESSAGE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, BrokerUnavailable):
        return Response(
            {"detail": str(exc)},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
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


def list_page(request: Request, view: Any, queryset: Any, row: Any) -> Response:
    """One page of `queryset`, each item made by `row(item)`."""
    paginator = IdCursorPagination()
    page: list[Any] = paginator.paginate_queryset(queryset, request, view=view) or []
    return paginator.get_paginated_response([row(item) for item in page])


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
    The browser's session requests are not counted: an annotator at work is not a script."""

    scope = "token"

    def get_rate(self) -> str | None:
        return str(settings.API_TOKEN_RATE) or None

    def allow_request(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, Token):
            return True
        return super().allow_request(request, view)
