"""GET /healthz: whether this web process can reach the database, the cache and the broker.

200 while the database answers, even with Redis gone ("degraded": annotation goes on, see
annotate/cache.py and annotate/broker.py); 503 only when the database does not. No login: a load
balancer or an orchestrator asks it. The errors themselves go to the log, not to the answer.
"""

import datetime
import logging
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from annotate.broker import BrokerUnavailable, broker_check
from annotate.cache import cache_health, cache_ping
from annotate.celery import app

logger = logging.getLogger(__name__)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.warning("health: database unreachable (%s: %s)", type(exc).__name__, exc)
        return "down"
    return "ok"


def _broker() -> str:
    if app.conf.task_always_eager:
        return "eager"
    try:
        broker_check()
    except BrokerUnavailable:
        return "down"
    return "ok"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    ping = cache_ping()
    body: dict[str, Any] = {
        "database": _database(),
        "cache": "local" if ping is None else "ok" if ping else "down",
        "broker": _broker(),
    }
    health = cache_health()
    if health.down_since is not None:
        body["cache_down_since"] = datetime.datetime.fromtimestamp(
            health.down_since, tz=datetime.UTC
        ).isoformat()
    if body["database"] != "ok":
        body["status"], code = "down", 503
    elif "down" in (body["cache"], body["broker"]):
        body["status"], code = "degraded", 200
    else:
        body["status"], code = "ok", 200
    response = JsonResponse(body, status=code)
    response["Cache-Control"] = "no-store"
    return response
