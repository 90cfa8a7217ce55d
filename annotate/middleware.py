import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

# Our pages need only scripts and styles from our own origin. Untrusted prompt and response text is
# sanitized on the server; this header is the second wall if a payload ever slips through.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Adds a strict Content-Security-Policy to every page outside the Django admin."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class DatabaseErrorMiddleware:
    """A page or HTMX request whose database connection failed answers 503 with a short
    message saying to try again, not a server error (the API answers the same in JSON, see
    annotate/api.py). The judging form carries an idempotency key, so a judgment sent again is
    stored once."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "%s %s: database error, answered 503 (%s: %s)",
            request.method,
            request.path,
            type(exception).__name__,
            exception,
        )
        response = HttpResponse(
            "The database could not be reached, so this may not have been saved. "
            "Try again in a moment.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "1"
        return response
