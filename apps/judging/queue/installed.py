"""Whether the database runs the queue functions this code was written for.

The queue's PL/pgSQL functions live in the database, not in the deployed code: `migrate`
installs them from the code's text (post_migrate, apps.judging.apps). A deploy that skipped
`migrate` would go on running the old bodies, silently. So the install signs each function with
the hash of the code's text, in a COMMENT (pg_dump keeps it; it needs no table, no model), and
serving refuses to start while one is missing, signed for other code, or changed by hand since
(a CREATE OR REPLACE keeps the comment, so each body must also be text the code holds).

Where it is compared: the system check (runserver, `check`, `check --deploy` and every command
that runs the checks, but `migrate`, which is what fixes it: judging's own migrate command),
WSGI and ASGI start-up (annotate/wsgi.py, annotate/asgi.py) and the Celery worker's start
(annotate/celery.py). One query on pg_proc, once per process, never per request. On SQLite
there are no functions and nothing to compare.
"""

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from apps.judging.queue.backend import postgresql
from apps.judging.queue.sql import FUNCTION_NAMES, functions_sql

HINT = "Run `python manage.py migrate`: it installs the functions of the code being deployed."

# Set while `migrate` runs its system checks: it is the command that installs the functions, so
# it must run while they are missing or old.
_installing: ContextVar[bool] = ContextVar("installing_queue_functions", default=False)


def functions_signature() -> str:
    """What each installed function's comment says: the hash of the code's whole text."""
    return "annotate:" + hashlib.sha256(functions_sql().encode()).hexdigest()


def functions_install(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """(Re)creates the queue's functions and signs them, in one transaction; elsewhere than on
    PostgreSQL, nothing."""
    connection = connections[using]
    if not postgresql(using):
        return
    signature = functions_signature()  # hex digits: safe inside the quotes
    comments = "".join(f"COMMENT ON FUNCTION {name} IS '{signature}';\n" for name in FUNCTION_NAMES)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(functions_sql() + comments)


def install_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: (re)creates the functions after every migrate; on SQLite, nothing.

    They hold no data, so replacing them is always safe, and doing it here keeps them equal to
    the code that calls them (apps.judging.queue) without a migration per change."""
    functions_install(using=using)


def functions_mismatch(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """How the installed functions differ from the code's, one phrase per function; empty when
    they are the code's (and always on SQLite). One query."""
    connection = connections[using]
    if not postgresql(using):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, p.prosrc, obj_description(p.oid, 'pg_proc') FROM pg_proc p"
            " WHERE p.proname = ANY(%s) AND pg_function_is_visible(p.oid)",
            [list(FUNCTION_NAMES)],
        )
        rows = cursor.fetchall()
    code, signature = functions_sql(), functions_signature()
    problems = []
    for name in FUNCTION_NAMES:
        installed = [(body, comment) for proname, body, comment in rows if proname == name]
        if not installed:
            problems.append(f"{name} is missing")
        elif len(installed) > 1:
            # Then migrate, which drops the functions by name, fails too: they are dropped by hand.
            problems.append(
                f"{name} exists {len(installed)} times, with other arguments "
                f"(drop those the code does not create: DROP FUNCTION {name}(<their arguments>))"
            )
        elif installed[0][1] != signature:
            problems.append(f"{name} was installed by other code")
        elif installed[0][0] not in code:
            problems.append(f"{name} was changed since it was installed")
    return problems


def _message(using: str, problems: Sequence[str]) -> str:
    return (
        f"The queue's PostgreSQL functions in database '{using}' are not this code's: "
        + "; ".join(problems)
        + "."
    )


def check_queue_functions(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The system check. Unlike Django's database checks it also runs without `--database`
    (on "default"): runserver and `check --deploy` must refuse too."""
    if _installing.get():
        return []
    messages: list[checks.CheckMessage] = []
    for using in databases or [DEFAULT_DB_ALIAS]:
        try:
            problems = functions_mismatch(using=using)
        except OperationalError as error:
            messages.append(
                checks.Warning(
                    f"Could not compare the queue's PostgreSQL functions in database '{using}' "
                    f"with the code's: {error}".strip(),
                    hint="Start-up compares them again; it lets a database that does not answer "
                    "through.",
                    id="judging.W001",
                )
            )
            continue
        if problems:
            messages.append(checks.Error(_message(using, problems), hint=HINT, id="judging.E001"))
    return messages


@contextmanager
def installing() -> Iterator[None]:
    """Leaves the check out while `migrate` runs its system checks."""
    token = _installing.set(True)
    try:
        yield
    finally:
        _installing.reset(token)


def refuse_stale_functions(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Raises ImproperlyConfigured, saying to run migrate, when the installed functions are not
    the code's. Called once at WSGI/ASGI start-up and at the worker's start.

    A database that does not answer is let through: requests then get their 503 and /healthz
    reports it (README, "When Redis or the database goes away"), as before. The connection this
    opened is closed, so that no forked process (gunicorn --preload, Celery's pool) shares it;
    inside a transaction it is the caller's, and stays open.
    """
    connection = connections[using]
    try:
        problems = functions_mismatch(using=using)
    except OperationalError:
        return
    finally:
        if not connection.in_atomic_block:
            connection.close()
    if problems:
        raise ImproperlyConfigured(f"{_message(using, problems)} {HINT}")
