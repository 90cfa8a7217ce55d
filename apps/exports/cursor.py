"""The `since` to send on the next incremental pull.

A judgment's `created_at` is taken when its transaction starts, and it becomes visible when that
transaction commits, a moment later. So "everything I have seen was made before the moment I
pulled" is not safe: a vote stamped just before the pull but committed just after it would be
missed by the next pull's `since` forever. Every export therefore names, in its `X-Next-Since`
header, a time EXPORT_SINCE_SETTLE seconds before it started. Everything stamped before that had
committed by then (no judgment's transaction runs that long), so a pull that sends it back as
`since` misses nothing; what was stamped within the settle window comes again, and rows repeat
across pulls (key them on `comparison_id`; judgments on `comparison_id` and `annotator`, the
pair being unique).
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

HEADER = "X-Next-Since"

# The header in the OpenAPI schema, for the endpoints that send it.
NEXT_SINCE_HEADER = OpenApiParameter(
    HEADER,
    OpenApiTypes.DATETIME,
    location=OpenApiParameter.HEADER,
    response=[200],
    description=(
        "The `since` to send on the next incremental pull: EXPORT_SINCE_SETTLE seconds (default "
        "60) before this response began reading, so that no vote committed late is missed. "
        "Rows made after it come again on that pull: key them on comparison_id (comparison_id "
        "and annotator for judgments)."
    ),
)


def next_since(now: datetime | None = None) -> datetime:
    """The `since` of the next pull, for a pull that starts reading at `now` (default: now)."""
    now = now or timezone.now()
    return now - timedelta(seconds=int(getattr(settings, "EXPORT_SINCE_SETTLE", 60)))


def format_since(moment: datetime) -> str:
    """An ISO 8601 time in UTC with a Z, which needs no escaping in a query string."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
