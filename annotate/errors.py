"""The one base of the errors a service raises for its caller to show: each says what went wrong
in words a user can act on, and the HTTP status it means. Every door maps them alike: the API's
exception handler (annotate.api) answers `status` with {"detail": message}, views show the
message, commands print it. This module imports nothing of the project, so that every app may
raise these without importing any other app."""

from typing import ClassVar


class ApplicationError(Exception):
    """A refusal or a bad request, said to the user; nothing was stored by the call that raised
    it. Subclasses set `status` (the HTTP status code) and, where an API client should tell the
    cases apart, `code`."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"

    def as_dict(self) -> dict[str, object]:
        """The body the API answers with."""
        return {"detail": str(self)}

    def headers(self) -> dict[str, str]:
        """The headers the API answers with, besides the usual ones."""
        return {}


class BadRequest(ApplicationError):
    """The request itself is wrong (a value out of range, a missing field): 400."""

    status = 400
    code = "invalid"


class Forbidden(ApplicationError):
    """The user may not do this, now or at all (a cap, a removed membership): 403."""

    status = 403
    code = "forbidden"


class NotFound(ApplicationError):
    """The thing named does not exist, or is not the user's to see: 404."""

    status = 404
    code = "not_found"


class Conflict(ApplicationError):
    """The request clashes with the current state (already judged, superseded): 409."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApplicationError):
    """The request body is larger than the limit: 413."""

    status = 413
    code = "payload_too_large"


class ServiceUnavailable(ApplicationError):
    """A service the request needs (the task queue, the export storage) does not answer now;
    nothing was done and the same request may well succeed later: 503. `retry_after`, when
    set, is the Retry-After header's seconds."""

    status = 503
    code = "service_unavailable"
    retry_after: ClassVar[int | None] = None

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(self.retry_after)}
