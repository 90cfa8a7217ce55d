"""Parquet for every export format: a fixed Arrow schema per format, written in row groups.

The columns are the JSON Lines rows' fields, in their order, with their nesting: messages are
lists of `{role, content}` structs, `votes` a struct of counts, `annotators` and `flags` lists of
strings, `ranking` a list of lists of ids. `criteria` in `judgments` is free-form (its keys are
the project's own criteria) and stored as JSON text. Which columns a pairwise export has, and
whether its prompts are messages or text, is the export's `Shape`, decided before the first
row: no column is ever typed null.
"""

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from apps.exports.selectors import Shape

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
STRINGS = pa.list_(pa.string())
# How many of a row's votes were people's and how many AI judges' (both always counted).
VOTES_BY_SOURCE = pa.struct([("human", pa.int64()), ("ai", pa.int64())])


def _votes(*names: str) -> pa.DataType:
    return pa.struct([(name, pa.int64()) for name in names])


def _evidence(shape: Shape) -> list[tuple[str, pa.DataType]]:
    """The evidence columns of `trl`, `trl-implicit` and `hh-rlhf` for the export's shape."""
    graded = [("strength_mean", pa.float64()), ("margin", pa.float64())] if shape.graded else []
    return [*EVIDENCE, *graded, *_trust(shape)]


def _trust(shape: Shape) -> list[tuple[str, pa.DataType]]:
    return [
        *([("label_confidence", pa.float64())] if shape.confidence else []),
        *([("chosen_position", pa.float64())] if shape.sides else []),
        ("guideline_versions", pa.list_(pa.int64())),
        ("votes_by_source", VOTES_BY_SOURCE),
    ]


EVIDENCE: list[tuple[str, pa.DataType]] = [
    ("comparison_id", pa.int64()),
    ("prompt_id", pa.string()),
    ("chosen_id", pa.string()),
    ("rejected_id", pa.string()),
    ("chosen_model", pa.string()),
    ("rejected_model", pa.string()),
    ("votes", _votes("chosen", "rejected", "tie", "both_bad")),
    ("n_annotators", pa.int64()),
    ("agreement", pa.float64()),
    ("unanimous", pa.bool_()),
    ("annotators", STRINGS),
    ("batch", pa.int64()),
]


def schema_for(format: str, shape: Shape | None = None) -> pa.Schema:
    """The Arrow schema of a format for the export's shape (the default Shape() when None)."""
    shape = shape or Shape()
    # A prompt and a response: message lists in the conversational form, else text.
    text = MESSAGES if shape.conversational else pa.string()
    fields: list[tuple[str, pa.DataType]]
    if format == "trl":
        fields = [("prompt", text), ("chosen", text), ("rejected", text), *_evidence(shape)]
    elif format == "trl-implicit":
        fields = [("chosen", text), ("rejected", text), *_evidence(shape)]
    elif format == "hh-rlhf":
        fields = [("chosen", pa.string()), ("rejected", pa.string()), *_evidence(shape)]
    elif format == "kto":
        fields = [
            ("prompt", text),
            ("completion", text),
            ("label", pa.bool_()),
            ("comparison_id", pa.int64()),
            ("prompt_id", pa.string()),
            ("candidate_id", pa.string()),
            ("model", pa.string()),
            ("votes", _votes("candidate", "other", "tie", "both_bad")),
            ("n_annotators", pa.int64()),
            ("agreement", pa.float64()),
            ("unanimous", pa.bool_()),
            ("annotators", STRINGS),
            ("batch", pa.int64()),
            *_trust(shape),
        ]
    elif format == "openai":
        fields = [
            ("input", pa.struct([("messages", MESSAGES)])),
            ("preferred_output", MESSAGES),
            ("non_preferred_output", MESSAGES),
        ]
    elif format == "arena":
        fields = [
            ("question_id", pa.string()),
            ("comparison_id", pa.int64()),
            ("model_a", pa.string()),
            ("model_b", pa.string()),
            ("winner", pa.string()),
            ("judge", pa.string()),
            ("anony", pa.bool_()),
            ("turn", pa.int64()),
            ("conversation_a", MESSAGES),
            ("conversation_b", MESSAGES),
            ("tstamp", pa.float64()),
            ("source", pa.string()),
        ]
    elif format == "listwise":
        fields = [
            ("prompt", text),
            ("prompt_id", pa.string()),
            ("comparison_id", pa.int64()),
            (
                "candidates",
                pa.list_(
                    pa.struct(
                        [
                            ("id", pa.string()),
                            ("model", pa.string()),
                            ("text", pa.string()),
                            ("rank", pa.int64()),
                            ("mean_place", pa.float64()),
                        ]
                    )
                ),
            ),
            (
                "rankings",
                pa.list_(pa.struct([("annotator", pa.string()), ("ranking", pa.list_(STRINGS))])),
            ),
            ("n_annotators", pa.int64()),
            ("kendall_w", pa.float64()),
            ("batch", pa.int64()),
            ("guideline_versions", pa.list_(pa.int64())),
            ("votes_by_source", VOTES_BY_SOURCE),
        ]
    elif format == "judgments":
        fields = [
            ("comparison_id", pa.int64()),
            ("prompt_id", pa.string()),
            ("annotator", pa.string()),
            ("left_id", pa.string()),
            ("right_id", pa.string()),
            ("choice", pa.string()),
            ("chosen_id", pa.string()),
            ("rationale", pa.string()),
            ("duration_ms", pa.int64()),
            ("created_at", pa.string()),
            ("candidate_a_id", pa.string()),
            ("strength", pa.int64()),
            ("criteria", pa.string()),  # JSON text: the project's own criteria as keys
            ("flags", STRINGS),
            ("ranking", pa.list_(STRINGS)),
            ("guideline_version", pa.int64()),
            ("gold", pa.bool_()),
            ("degradation", pa.string()),
            ("source", pa.string()),
        ]
    else:
        raise ValueError(f"no Parquet schema for format {format!r}")
    return pa.schema(fields)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def row_adapter(format: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What turns a JSON Lines row into the schema's row: JSON text for `criteria`."""
    if format == "judgments":

        def judgment(row: dict[str, Any]) -> dict[str, Any]:
            return {**row, "criteria": None if row["criteria"] is None else _json(row["criteria"])}

        return judgment
    return lambda row: row


def write_parquet(
    rows: Iterable[dict[str, Any]],
    sink: BinaryIO,
    *,
    format: str,
    shape: Shape,
    row_group: int,
) -> int:
    """Writes the rows to `sink` in row groups of `row_group` rows; returns how many there were.
    Only one row group's rows are held at a time."""
    schema = schema_for(format, shape)
    adapt = row_adapter(format)
    count = 0
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for group in _groups((adapt(row) for row in rows), row_group):
            if count == 0:
                check_fields(format, list(group[0]), schema.names)
            writer.write_table(pa.Table.from_pylist(group, schema=schema), row_group_size=row_group)
            count += len(group)
        # With no rows, the file still has the schema: an empty dataset, not an error.
    return count


def check_fields(format: str, fields: list[str], columns: list[str]) -> None:
    """The rows' fields must be the schema's columns, in order: a field added to a format and
    not to its schema would otherwise be dropped from the Parquet file without a word."""
    if fields != columns:
        raise ValueError(
            f"the {format} rows' fields {fields} are not the Parquet schema's columns {columns}; "
            "update apps/exports/parquet.py"
        )


def _groups(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    for row in rows:
        group.append(row)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
