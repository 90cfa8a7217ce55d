"""The API's body parsers: as DRF's, and a 400 naming each field that cannot be stored.

PostgreSQL's text and jsonb refuse a NUL character and a lone UTF-16 surrogate, and jsonb a
non-finite number (JSON's 1e999 reads as infinity); refused here, once for every view, they are
a 400 naming the field instead of a 500 from the database.
"""

import math
import re
from typing import IO, Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import DataAndFiles, JSONParser, MultiPartParser

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: Any) -> str | None:
    """Why `value` (parsed JSON, at any depth) cannot be stored, or None."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            if "\x00" in value:
                return "Must not contain a NUL character (\\u0000)."
            return "Must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)."
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "Must be a finite number."
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key) or unstorable(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = unstorable(item)
            if problem:
                return problem
    return None


def refuse_unstorable(fields: dict[str, Any]) -> None:
    """A 400 naming each field whose name or value cannot be stored."""
    errors = {}
    for name, value in fields.items():
        problem = unstorable(name) or unstorable(value)
        if problem:
            errors[_UNSTORABLE.sub("?", str(name))] = [problem]
    if errors:
        raise ValidationError(errors)


class StorableJSONParser(JSONParser):
    def parse(
        self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        data = super().parse(stream, media_type, parser_context)  # type: ignore[arg-type]
        if isinstance(data, dict):
            refuse_unstorable(data)
        else:
            problem = unstorable(data)
            if problem:
                raise ParseError(f"The body: {problem}")
        return data


class StorableMultiPartParser(MultiPartParser):
    def parse(
        self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Any = None
    ) -> "DataAndFiles[Any, Any]":  # the class is generic only in the stubs
        parsed = super().parse(stream, media_type, parser_context)  # type: ignore[arg-type]
        data: Any = parsed.data
        files: Any = parsed.files
        refuse_unstorable(dict(data.lists()))
        refuse_unstorable({name: upload.name for name, upload in files.items()})
        return parsed
