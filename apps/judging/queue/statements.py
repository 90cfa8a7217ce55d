"""How a shared statement runs: the queue's SQL steps are written once, as statements with
named parameters (`%(annotator)s`), and run two ways.

- On PostgreSQL a function (annotate_next, annotate_submit, ...) embeds the very statement, its
  parameters turned into the function's variables (`embed`): still one round trip.
- Elsewhere (SQLite 3.35+, and PostgreSQL where a step has no function) the Python path runs
  it through a cursor (`run`), one statement each, with a lock statement first where the
  database locks rows.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import connection, models
from django.db.models import NOT_PROVIDED


def embed(sql: str, variables: Mapping[str, str]) -> str:
    """A shared statement as PL/pgSQL text: each parameter becomes the function's variable (or
    expression) of that name in `variables`."""
    return sql % variables


def perform(sql: str, variables: Mapping[str, str]) -> str:
    """A shared SELECT run for its locks (or its effects) alone, as PL/pgSQL text."""
    return "PERFORM " + embed(sql, variables).removeprefix("SELECT ")


def run(sql: str, params: Mapping[str, Any], *, lock: str = "") -> tuple[Any, ...] | None:
    """Runs a shared statement through a cursor in the caller's transaction and returns its
    first row (None for a statement that returns none). `lock` runs first where the database
    locks rows: SQLite serializes writers and has no FOR UPDATE."""
    params = _adapted(params)
    with connection.cursor() as cursor:
        if lock and connection.features.has_select_for_update:
            cursor.execute(lock, params)
        cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone() if cursor.description else None
        return row


def run_all(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Runs a shared statement through a cursor and returns all its rows (a RETURNING list)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, _adapted(params))
        return list(cursor.fetchall()) if cursor.description else []


def run_many(sql: str, params_list: Iterable[Mapping[str, Any]]) -> None:
    """Runs a shared statement once per parameter set, in the order given, as one call
    (executemany); no call when there is none."""
    adapted = [_adapted(params) for params in params_list]
    if adapted:
        with connection.cursor() as cursor:
            cursor.executemany(sql, adapted)


def _adapted(params: Mapping[str, Any]) -> dict[str, Any]:
    """Datetimes as the ORM stores them: SQLite keeps text, compared as text, so a cursor's own
    rendering (with its offset) would not compare right with the stored values."""
    return {
        name: connection.ops.adapt_datetimefield_value(value)
        if isinstance(value, datetime)
        else value
        for name, value in params.items()
    }


def unset_required_columns(
    model: type[models.Model], values: Mapping[str, str]
) -> list[str | None]:
    """The model's columns that need a value (NOT NULL, no default in the database) and that an
    INSERT setting `values` (column: expression) leaves out: such an INSERT would fail where it
    runs, on one database only if only one path runs it. tests/annotate/test_migrations.py
    checks each shared INSERT with it."""
    return [
        field.column
        for field in model._meta.concrete_fields
        if not field.primary_key
        and not field.null
        and field.db_default is NOT_PROVIDED
        and field.column not in values
    ]
