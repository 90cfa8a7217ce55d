import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

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


API_PREFIX = "/api/"
# Multipart framing (boundaries, part headers) around an uploaded file: a body this much above
# the file limit may still carry a file within it; the view checks the file itself.
MULTIPART_SLACK = 64 * 1024


def api_error(status: int, detail: str, **fields: list[str]) -> JsonResponse:
    """An error answer of the API: {"detail": ...}, or per-parameter lists of messages."""
    body: dict[str, Any] = {name: messages for name, messages in fields.items()}
    if not fields:
        body["detail"] = detail
    return JsonResponse(body, status=status)


def nul_parameters(request: HttpRequest) -> list[str]:
    """The query parameters whose name or value holds a NUL character (PostgreSQL's text and
    jsonb cannot store one), by name."""
    raw = request.META.get("QUERY_STRING", "")
    if "%00" not in raw and "\x00" not in raw:
        return []
    return sorted(
        {
            name
            for name, values in request.GET.lists()
            if "\x00" in name or any("\x00" in value for value in values)
        }
    )


class ApiErrorsMiddleware:
    """Under /api/, every error is JSON and bad input is refused before any view runs:

    - a query parameter holding a NUL character: 400 naming it;
    - a body without Content-Length (Transfer-Encoding: chunked): 411, since the WSGI server
      would hand the view an empty body;
    - a Content-Length above the view's limit (IMPORT_MAX_BYTES for an import, else
      DATA_UPLOAD_MAX_MEMORY_SIZE): 413, before the body is read;
    - Django's own error pages (an unknown path's 404, a 400, a 500 with DEBUG off) become
      {"detail": ...}.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        refused = self.refuse(request)
        response = refused or self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            reason = response.reason_phrase or "Error"
            detail = (
                f"No API endpoint at {request.path}."
                if response.status_code == 404
                else f"{reason}."
            )
            replaced = api_error(response.status_code, detail)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replaced[header] = response[header]
            return replaced
        return response

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        names = nul_parameters(request)
        if names:
            return api_error(
                400,
                "",
                **{
                    name.replace("\x00", "\\u0000"): ["Must not contain a NUL character (\\u0000)."]
                    for name in names
                },
            )
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.META.get("CONTENT_LENGTH"):
            return api_error(
                411,
                "Send the body with a Content-Length header; chunked uploads are not read.",
            )
        return None

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return api_error(400, "The Content-Length header is not a number.")
        body_limit = getattr(getattr(view_func, "cls", None), "body_limit", None)
        if body_limit is not None:
            limit = body_limit(request)
            what = f"over IMPORT_MAX_BYTES ({settings.IMPORT_MAX_BYTES} bytes) for the file"
        else:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            what = f"over DATA_UPLOAD_MAX_MEMORY_SIZE ({limit} bytes)"
        if length > limit:
            return api_error(413, f"The request body is {length} bytes: {what}.")
        return None


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
