"""The JSON Lines import format: one prompt a line, with its candidate responses.

    {"id": "p-17", "prompt": "..." | [{"role": "user", "content": "..."}, ...],
     "candidates": [{"id": "c1", "text": "...", "model": "m", "params": {}, "metadata": {}}, ...],
     "metadata": {...}}

`PromptStream` reads the file a line at a time and yields each good prompt, collecting every
error found, each with its line number, so that a bad file can be fixed in one pass; `parse_jsonl`
returns them all as a list, or raises `ImportFormatError`.
"""

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from annotate.errors import BadRequest

ROLES = ("system", "user", "assistant", "tool")
PROMPT_KEYS = {"id", "prompt", "candidates", "metadata", "gold"}
CANDIDATE_KEYS = {"id", "text", "model", "params", "metadata"}
MAX_ID_LENGTH = 255
MAX_MODEL_LENGTH = 200
MAX_CANDIDATES = 16
# A pairwise comparison needs 2 candidates (a listwise one 3: apps.batches.selectors).
MIN_CANDIDATES = 2
# How each way in names the import option "candidates optional", for the error that suggests it.
CANDIDATES_OPTIONAL_HINT = (
    "to import prompts whose responses are generated later, import with candidates optional "
    "(API: candidates=optional; command: --candidates-optional; admin upload: the "
    "'Candidates optional' box)"
)
# The longest prompt, message or response, in characters (IMPORT_MAX_TEXT_CHARS): every text is
# rendered once at import and shown on every judging page, so one text cannot be a file's worth.
MAX_TEXT_CHARS = 200_000
# Escapes that JSON allows but a database cannot store: NUL and lone UTF-16 surrogates.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True)
class LineError:
    line: int | None  # None for an error about the whole file
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error}


class ImportFormatError(BadRequest):
    """The file has errors; nothing was imported. `errors` are the first of them (`total` in
    all), each naming its line, so that a bad file can be fixed in one pass."""

    def __init__(self, errors: list[LineError], total: int | None = None) -> None:
        self.errors = errors
        self.total = total if total is not None else len(errors)
        super().__init__(f"{self.total} error(s) in the file")

    def as_dict(self) -> dict[str, object]:
        """{"errors": [{"line", "error"}, ...]}, the last saying how many more were found."""
        errors = [error.as_dict() for error in self.errors]
        if self.total > len(errors):
            errors.append(
                {"line": None, "error": f"... and {self.total - len(errors)} more errors"}
            )
        return {"errors": errors}


@dataclass
class ParsedCandidate:
    external_id: str
    text: str
    model: str
    params: dict[str, Any]
    metadata: dict[str, Any]


@dataclass
class ParsedPrompt:
    line: int
    external_id: str
    content: str | list[dict[str, str]]
    metadata: dict[str, Any]
    candidates: list[ParsedCandidate] = field(default_factory=list)
    # A gold item's answer: a candidate id (preferred), "tie" or "both_bad"; None if not gold.
    gold_preferred: str | None = None
    gold_outcome: str | None = None


def _type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _parse_id(value: object, where: str) -> str:
    # Whole numbers are accepted as ids because many datasets number their rows.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{where} must be a string, not {_type_name(value)}")
    text = str(value)
    if not text.strip():
        raise ValueError(f"{where} must not be empty")
    if len(text) > MAX_ID_LENGTH:
        raise ValueError(f"{where} is longer than {MAX_ID_LENGTH} characters")
    return text


def _parse_object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, not {_type_name(value)}")
    return value


def _unknown_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ValueError(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _check_length(text: str, where: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise ValueError(
            f"{where} is {len(text)} characters long; the limit is {max_chars} "
            "(IMPORT_MAX_TEXT_CHARS)"
        )


def _parse_prompt_content(
    value: object, max_chars: int = MAX_TEXT_CHARS
) -> str | list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("'prompt' must not be empty")
        _check_length(value, "'prompt'", max_chars)
        return value
    if not isinstance(value, list):
        raise ValueError(
            f"'prompt' must be a string or a list of messages, not {_type_name(value)}"
        )
    if not value:
        raise ValueError("'prompt' must not be an empty list")
    messages = []
    for index, message in enumerate(value):
        where = f"prompt message {index + 1}"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object, not {_type_name(message)}")
        _unknown_keys(message, {"role", "content"}, where)
        if "role" not in message:
            raise ValueError(f"{where} is missing 'role'")
        if "content" not in message:
            raise ValueError(f"{where} is missing 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"{where} 'content' must be a string, not {_type_name(content)}")
        _check_length(content, f"{where} 'content'", max_chars)
        messages.append({"role": role, "content": content})
    return messages


def _parse_candidate(
    value: object, index: int, seen: set[str], max_chars: int = MAX_TEXT_CHARS
) -> ParsedCandidate:
    where = f"candidate {index + 1}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, not {_type_name(value)}")
    _unknown_keys(value, CANDIDATE_KEYS, where)
    for key in ("id", "text"):
        if key not in value:
            raise ValueError(f"{where} is missing '{key}'")
    external_id = _parse_id(value["id"], f"{where} 'id'")
    if external_id in seen:
        raise ValueError(f"duplicate candidate id {external_id!r} in this prompt")
    seen.add(external_id)
    text = value["text"]
    if not isinstance(text, str):
        raise ValueError(f"{where} 'text' must be a string, not {_type_name(text)}")
    _check_length(text, f"{where} 'text'", max_chars)
    model = value.get("model") or ""
    if not isinstance(model, str):
        raise ValueError(f"{where} 'model' must be a string, not {_type_name(model)}")
    if len(model) > MAX_MODEL_LENGTH:
        raise ValueError(f"{where} 'model' is longer than {MAX_MODEL_LENGTH} characters")
    return ParsedCandidate(
        external_id=external_id,
        text=text,
        model=model,
        params=_parse_object(value.get("params"), f"{where} 'params'"),
        metadata=_parse_object(value.get("metadata"), f"{where} 'metadata'"),
    )


def parse_line(
    number: int,
    obj: object,
    *,
    max_text_chars: int = MAX_TEXT_CHARS,
    candidates_optional: bool = False,
) -> ParsedPrompt:
    """One line's prompt. With `candidates_optional` (prompts whose responses are generated
    later), `candidates` may be missing, null, empty or hold a single response."""
    if not isinstance(obj, dict):
        raise ValueError(f"each line must be a JSON object, not {_type_name(obj)}")
    _unknown_keys(obj, PROMPT_KEYS, "the prompt")
    required = ("id", "prompt") if candidates_optional else ("id", "prompt", "candidates")
    missing = [key for key in required if key not in obj]
    if missing:
        hint = f"; {CANDIDATES_OPTIONAL_HINT}" if "candidates" in missing else ""
        raise ValueError(f"missing field(s): {', '.join(map(repr, missing))}{hint}")
    external_id = _parse_id(obj["id"], "'id'")
    content = _parse_prompt_content(obj["prompt"], max_text_chars)
    raw_candidates = obj.get("candidates")
    if raw_candidates is None and candidates_optional:
        raw_candidates = []
    if not isinstance(raw_candidates, list):
        raise ValueError(f"'candidates' must be a list, not {_type_name(raw_candidates)}")
    if len(raw_candidates) < MIN_CANDIDATES and not candidates_optional:
        raise ValueError(
            f"'candidates' needs at least {MIN_CANDIDATES} responses, got {len(raw_candidates)}; "
            f"{CANDIDATES_OPTIONAL_HINT}"
        )
    if len(raw_candidates) > MAX_CANDIDATES:
        raise ValueError(
            f"'candidates' has {len(raw_candidates)} responses; at most {MAX_CANDIDATES}"
        )
    seen: set[str] = set()
    candidates = [
        _parse_candidate(c, i, seen, max_text_chars) for i, c in enumerate(raw_candidates)
    ]
    if "gold" in obj and len(candidates) < MIN_CANDIDATES:
        # A gold item is a comparison of the prompt's own responses, known at import.
        raise ValueError(
            f"'gold' needs the prompt's candidates (at least {MIN_CANDIDATES}); "
            f"this prompt has {len(candidates)}"
        )
    preferred, outcome = _parse_gold(obj.get("gold"), seen) if "gold" in obj else (None, None)
    return ParsedPrompt(
        line=number,
        external_id=external_id,
        content=content,
        metadata=_parse_object(obj.get("metadata"), "'metadata'"),
        candidates=candidates,
        gold_preferred=preferred,
        gold_outcome=outcome,
    )


def _parse_gold(value: object, candidate_ids: set[str]) -> tuple[str | None, str | None]:
    """`{"preferred": "<candidate id>"}`, or "tie", or "both_bad"."""
    if value in ("tie", "both_bad"):
        return None, str(value)
    if isinstance(value, dict) and set(value) == {"preferred"}:
        preferred = _parse_id(value["preferred"], "'gold' 'preferred'")
        if preferred not in candidate_ids:
            raise ValueError(f"'gold' prefers {preferred!r}, which is not one of the candidates")
        return preferred, None
    raise ValueError('\'gold\' must be {"preferred": "<candidate id>"}, "tie" or "both_bad"')


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # Python reads 1e999 as infinity, which JSON cannot carry and PostgreSQL's jsonb refuses.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text} is too large to store")
    return number


def _check_storable(value: object) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a string contains a NUL character (\\u0000), which cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string contains a lone UTF-16 surrogate escape") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    # Split on \n only: CRLF ends are handled by stripping \r, and a lone \r inside a JSON
    # string stays where it is.
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        yield number, raw.rstrip(b"\r\n")


class PromptStream:
    """The prompts of a JSON Lines file, one at a time, checked as they are read.

    Iterating yields each good prompt; the errors found meanwhile are collected (at most
    max_errors of them, all counted). After the iteration, `raise_errors()` raises
    ImportFormatError with every error, the file's own first; `extra_check`, if given, is called
    with each good prompt and may return an error message for it (a project's own rules), which
    is reported only when the file has no format error, as is an empty file.

    Memory is bounded by one line and the prompt ids seen (to find duplicates), not by the file.
    """

    def __init__(
        self,
        stream: IO[bytes] | Iterable[bytes],
        *,
        max_errors: int = 1000,
        progress: Callable[[int], None] | None = None,
        progress_every: int = 2000,
        max_text_chars: int = MAX_TEXT_CHARS,
        extra_check: Callable[[ParsedPrompt], str | None] | None = None,
        candidates_optional: bool = False,
    ) -> None:
        self.stream = stream
        self.candidates_optional = candidates_optional
        self.max_errors = max_errors
        self.progress = progress
        self.progress_every = progress_every
        self.max_text_chars = max_text_chars
        self.extra_check = extra_check
        self.errors: list[LineError] = []
        self.error_count = 0
        self.extra_errors: list[LineError] = []
        self.extra_count = 0
        self.prompts = 0
        self.lines = 0

    def fail(self, line: int | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(LineError(line, message))

    def _fail_extra(self, line: int, message: str) -> None:
        self.extra_count += 1
        if len(self.extra_errors) < self.max_errors:
            self.extra_errors.append(LineError(line, message))

    @property
    def failed(self) -> bool:
        return bool(self.error_count or self.extra_count)

    def __iter__(self) -> Iterator[ParsedPrompt]:
        first_line_of: dict[str, int] = {}
        progress, every = self.progress, self.progress_every
        for number, raw in _lines(self.stream):  # type: ignore[arg-type]
            self.lines = number
            if progress is not None and number % every == 0:
                progress(number)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.fail(
                    number,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                )
                continue
            try:
                obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
            except json.JSONDecodeError as exc:
                self.fail(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            except (ValueError, RecursionError) as exc:
                self.fail(number, f"invalid JSON: {exc}")
                continue
            try:
                if _SUSPECT_ESCAPE.search(raw):
                    _check_storable(obj)
                prompt = parse_line(
                    number,
                    obj,
                    max_text_chars=self.max_text_chars,
                    candidates_optional=self.candidates_optional,
                )
            except ValueError as exc:
                self.fail(number, str(exc))
                continue
            first = first_line_of.setdefault(prompt.external_id, number)
            if first != number:
                self.fail(
                    number,
                    f"duplicate prompt id {prompt.external_id!r} (first on line {first})",
                )
                continue
            if self.extra_check is not None:
                problem = self.extra_check(prompt)
                if problem:
                    self._fail_extra(number, problem)
                    continue
            self.prompts += 1
            yield prompt

    def raise_errors(self) -> None:
        """Raises ImportFormatError if the file (read to its end) had an error, or no prompt."""
        if not self.error_count and not self.extra_count and not self.prompts:
            self.fail(None, "the file is empty: it has no prompts")
        if self.error_count:
            raise ImportFormatError(self.errors, total=self.error_count)
        if self.extra_count:
            raise ImportFormatError(self.extra_errors, total=self.extra_count)


def parse_jsonl(
    stream: IO[bytes] | Iterable[bytes],
    *,
    max_errors: int = 1000,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
    max_text_chars: int = MAX_TEXT_CHARS,
    candidates_optional: bool = False,
) -> list[ParsedPrompt]:
    """Every prompt of the file, or ImportFormatError with (at most max_errors of) every error.

    `progress`, if given, is called with the number of lines read so far every `progress_every`
    lines. A prompt, message or response longer than `max_text_chars` characters is an error.
    The import itself reads the file as a stream (PromptStream); this keeps it all in a list.
    `candidates_optional` lets a prompt come with fewer than 2 candidates (see parse_line).
    """
    prompts = PromptStream(
        stream,
        max_errors=max_errors,
        progress=progress,
        progress_every=progress_every,
        max_text_chars=max_text_chars,
        candidates_optional=candidates_optional,
    )
    result = list(prompts)
    prompts.raise_errors()
    return result
