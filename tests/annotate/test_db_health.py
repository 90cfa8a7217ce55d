"""The PostgreSQL backend's health check (annotate/postgresql/base.py): a persistent connection
that served a request a moment ago is reused without a SELECT 1; an idle one is checked, and a
dead one replaced before the request uses it.

Requests are played by Django's own handler of their start and end (close_old_connections), and
the server side of the connection is ended with pg_terminate_backend from another connection.
"""

from typing import Any

import psycopg
import pytest
from django.db import OperationalError, close_old_connections, connection, connections

from annotate.postgresql.base import DatabaseWrapper
from tests.conftest import ON_POSTGRES

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def request_served() -> None:
    """One request: started, one query, finished."""
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    close_old_connections()


def terminate_server_side() -> None:
    settings_dict = connection.settings_dict
    pid = connection.connection.info.backend_pid
    dsn = psycopg.conninfo.make_conninfo(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or None,
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
    )
    with psycopg.connect(dsn, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def pid_now() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_the_backend_is_ours() -> None:
    assert ON_POSTGRES
    assert type(connections["default"]).__module__ == "annotate.postgresql.base"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_a_connection_idle_longer_than_the_window_is_checked_and_replaced(settings: Any) -> None:
    settings.DATABASE_HEALTH_CHECK_AFTER = 5
    request_served()
    before = pid_now()
    close_old_connections()
    ours = connections["default"]
    assert isinstance(ours, DatabaseWrapper) and ours.served_at is not None
    ours.served_at -= 6  # idle for 6 s
    terminate_server_side()
    # The next request's check finds it dead and connects again: the request does not fail.
    close_old_connections()
    assert pid_now() != before
    close_old_connections()


def test_a_connection_that_just_served_is_trusted_without_the_round_trip(settings: Any) -> None:
    """Proof that no SELECT 1 ran: a connection ended on the server side a moment after serving
    is used as it is, and its request fails (the middleware answers 503 with Retry-After); it
    is closed at that request's end, and the next request connects again."""
    settings.DATABASE_HEALTH_CHECK_AFTER = 5
    request_served()
    before = pid_now()
    close_old_connections()
    terminate_server_side()
    close_old_connections()  # the next request starts
    with pytest.raises(OperationalError):
        pid_now()
    close_old_connections()  # it ends: the broken connection is closed
    assert connection.connection is None
    close_old_connections()
    assert pid_now() != before
    close_old_connections()


def test_at_zero_every_reuse_is_checked(settings: Any) -> None:
    settings.DATABASE_HEALTH_CHECK_AFTER = 0
    request_served()
    before = pid_now()
    close_old_connections()
    terminate_server_side()
    close_old_connections()
    assert pid_now() != before  # checked, found dead, replaced
    close_old_connections()
