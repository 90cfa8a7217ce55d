"""Sending tasks to the workers, and saying clearly when the broker (Redis) cannot take them.

Work that needs a worker (a background export, a background import, dashboard figures of a large
project) is refused while the broker is gone: the request answers 503 within about a second
(REDIS_TIMEOUT bounds each try; see the CELERY_* settings) with a message saying that nothing was
created and to try again, instead of hanging for Celery's default ~19 s of retries and then
failing with a 500. The request checks the broker before it creates anything (`broker_check`),
and withdraws what it created if the send fails after all (`send_task`), so no row is left
behind either way.
"""

import logging
import time
from typing import Any

from celery import Task
from django.utils.module_loading import import_string
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from annotate.celery import app
from annotate.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

# What a send raises when Redis is gone: kombu's error for the broker, redis-py's own errors
# (reaching the result store, or the broker's client directly), socket errors, and the
# RuntimeError of Celery's result store ("Retry limit exceeded while trying to reconnect").
SEND_ERRORS: tuple[type[BaseException], ...] = (OperationalError, RedisError, OSError, RuntimeError)

MESSAGE = (
    "The task queue (Redis) cannot be reached, so this cannot be queued now; nothing was "
    "created. Judging is not affected. Try again in a minute."
)
RETRY_AFTER_SECONDS = 60


class BrokerUnavailable(ServiceUnavailable):
    """The broker could not take a task: the request answers 503, to retry after a minute."""

    code = "broker_unavailable"
    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


def _eager() -> bool:
    return bool(app.conf.task_always_eager)


def broker_check() -> None:
    """Raises BrokerUnavailable unless the broker answers a PING (no-op when tasks run eagerly)."""
    if _eager():
        return
    started = time.monotonic()
    try:
        with app.pool.acquire(block=True, timeout=2) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1)
            # Redis: a PING on the channel's client (connecting alone proves little). Other
            # transports (memory:// without REDIS_URL) have no client to ask.
            client = getattr(connection.default_channel, "client", None)
            if client is not None:
                client.ping()
    except SEND_ERRORS as exc:
        logger.warning(
            "broker: unreachable after %.2f s (%s: %s)",
            time.monotonic() - started,
            type(exc).__name__,
            exc,
        )
        raise BrokerUnavailable() from exc


def send_task(name: str, *args: Any) -> None:
    """Sends the task `name` with `args` to the workers; BrokerUnavailable if the broker cannot
    take it.

    A task is named by its dotted path (each @shared_task in apps/*/tasks.py says its name so), and
    resolved here: a service names the task it sends instead of importing its app's tasks module,
    which imports that service (tests/annotate/test_architecture.py checks the names)."""
    task: Task = import_string(name)
    if _eager():
        # Runs here and now: its own errors are not the broker's. With apply(), not
        # apply_async(): Celery's eager apply_async() saves and restores a process-wide "a task is
        # running" flag around the run, which two threads doing so at once (runserver's
        # requests, concurrent imports) can leave set for good; every later result.get() in the
        # process then refuses to run ("Never call result.get() within a task!").
        task.apply(args)
        return
    started = time.monotonic()
    try:
        task.apply_async(args)
    except SEND_ERRORS as exc:
        logger.warning(
            "broker: %s%r not sent after %.2f s (%s: %s)",
            task.name,
            args,
            time.monotonic() - started,
            type(exc).__name__,
            exc,
        )
        raise BrokerUnavailable() from exc
