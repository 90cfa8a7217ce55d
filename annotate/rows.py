"""Model instances from rows of plain SQL, as the ORM would have built them.

The hot paths (next, submit) fetch their rows with one hand-written statement each; building
the same queries through the ORM cost more Python than the database took to run them.
"""

from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, JSONField, Model

M = TypeVar("M", bound=Model)


# Each field's column expression and converters: finding them anew cost more than converting (a
# membership's row with its project is about 45 columns, read on every submit that asks for the
# next lease). They depend only on the field and the backend of `connection` (the default
# database, one backend for the life of a process), so each field keeps its own, as an attribute:
# a dict keyed by the field would hash it, which builds a tuple from its model's options on every
# call, and one keyed by id() could hand a new field the entry of a collected one.
_CACHED = "_annotate_row_converters"


def _converters(field: "Field[Any, Any]") -> tuple[Any, list[Any]]:
    found: tuple[Any, list[Any]] | None = field.__dict__.get(_CACHED)
    if found is None:
        column = field.get_col(field.model._meta.db_table)
        found = (
            column,
            [*connection.ops.get_db_converters(column), *column.get_db_converters(connection)],
        )
        field.__dict__[_CACHED] = found
    return found


def converted(field: "Field[Any, Any]", value: Any) -> Any:
    """A column's value as the ORM gives it for this field: the backend's conversions (SQLite's
    datetimes, say), then the field's own (JSON decoded, and so on)."""
    column, converters = _converters(field)
    for converter in converters:
        value = converter(value, column, connection)
    return value


def loaded(model: type[M], **values: Any) -> M:
    """An instance as if loaded from the database with these fields (given by attname, values
    as the ORM gives them); any other field is deferred, and fetched if read."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    unknown = set(values) - set(names)
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    return model.from_db(connection.alias, names, [values[name] for name in names])


def loaded_from_row(model: type[M], row: "list[Any] | tuple[Any, ...]") -> M:
    """An instance from a row of all its concrete fields' columns, in their order."""
    fields = model._meta.concrete_fields
    return loaded(
        model,
        **{f.attname: converted(f, value) for f, value in zip(fields, row, strict=True)},
    )


def loaded_from_json(model: type[M], obj: dict[str, Any]) -> M:
    """An instance from PostgreSQL's to_jsonb() of a row of its table (keyed by column): each
    value made what the field holds (to_python: a timestamp from its ISO text, and so on); a
    JSON field's value is JSON already."""
    values: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        value = obj[str(field.column)]
        if value is not None and not isinstance(field, JSONField):
            value = field.to_python(value)
        values[field.attname] = value
    return loaded(model, **values)


def columns(model: type[Model], alias: str) -> list[str]:
    """`alias.column` for each concrete field of the model, in order, quoted."""
    quote = connection.ops.quote_name
    return [f"{alias}.{quote(str(f.column))}" for f in model._meta.concrete_fields]
