"""The one place that asks which database serves the queue.

PostgreSQL runs the queue's steps as functions (sql_*.py), one round trip each; any other
database (SQLite, the zero-setup default) runs the ORM path, where writers are serialized.
"""

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, transaction

from annotate import db


def postgresql(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the queue's PL/pgSQL functions serve this database."""
    return db.postgresql(using)


def call(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """Runs one statement that calls a queue function and returns its row.

    Outside a transaction the statement is its own (autocommit): one round trip, no BEGIN or
    COMMIT. Inside one (a test, a caller's atomic block) it runs under a savepoint, so that an
    error rolls back this call and leaves the caller's transaction usable.
    """
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            row: tuple[Any, ...] = cursor.fetchone()
            return row
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        return row


def fetchone(sql: str, params: list[Any]) -> tuple[Any, ...]:
    """Runs one statement in the caller's transaction, with no savepoint, and returns its row."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] = cursor.fetchone()
        return row
