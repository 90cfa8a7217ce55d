import io
import json

import pytest

from apps.batches.import_format import ImportFormatError, parse_jsonl
from tests.conftest import jsonl, prompt_line


def parse(data: bytes):
    return parse_jsonl(io.BytesIO(data))


def errors_of(data: bytes) -> list[tuple[int | None, str]]:
    with pytest.raises(ImportFormatError) as info:
        parse(data)
    return [(e.line, e.error) for e in info.value.errors]


def test_it_parses_a_string_prompt_with_candidates():
    (prompt,) = parse(jsonl(prompt_line("p-1", n=3, metadata={"source": "s"})))
    assert prompt.external_id == "p-1"
    assert prompt.content == "What is 2 + 2?"
    assert prompt.metadata == {"source": "s"}
    assert [c.external_id for c in prompt.candidates] == ["c1", "c2", "c3"]
    assert prompt.candidates[0].model == "model-1"


def test_it_parses_a_conversation_prompt():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "tool", "content": "{}"},
        {"role": "user", "content": "Bye?"},
    ]
    (prompt,) = parse(jsonl(prompt_line(prompt=messages)))
    assert prompt.content == messages


def test_it_accepts_bom_crlf_and_blank_lines():
    data = b"\xef\xbb\xbf" + json.dumps(prompt_line("a")).encode() + b"\r\n\r\n   \r\n"
    data += json.dumps(prompt_line("b")).encode() + b"\r\n"
    assert [p.external_id for p in parse(data)] == ["a", "b"]


def test_it_accepts_whole_number_ids_and_params():
    row = prompt_line()
    row["id"] = 17
    row["candidates"][0]["id"] = 1
    row["candidates"][0]["params"] = {"temperature": 0.7}
    (prompt,) = parse(jsonl(row))
    assert prompt.external_id == "17"
    assert prompt.candidates[0].external_id == "1"
    assert prompt.candidates[0].params == {"temperature": 0.7}


def test_it_keeps_a_lone_carriage_return_inside_text():
    row = prompt_line()
    row["candidates"][0]["text"] = "a\rb"
    (prompt,) = parse(jsonl(row))
    assert prompt.candidates[0].text == "a\rb"


def test_it_rejects_an_empty_file():
    assert errors_of(b"") == [(None, "the file is empty: it has no prompts")]
    assert errors_of(b"\n\r\n  \n") == [(None, "the file is empty: it has no prompts")]
    assert errors_of(b"\xef\xbb\xbf") == [(None, "the file is empty: it has no prompts")]


def test_it_reports_invalid_json_with_its_line():
    errors = errors_of(jsonl(prompt_line("a"), '{"id": "b", ', prompt_line("c")))
    assert len(errors) == 1
    assert errors[0][0] == 2
    assert errors[0][1].startswith("invalid JSON")


def test_it_reports_invalid_utf8_with_its_line():
    data = jsonl(prompt_line("a")) + b'{"id": "b\xff"}\n'
    assert errors_of(data) == [(2, "not valid UTF-8 (byte 0xff at column 10)")]


def test_it_rejects_nan_and_nul_and_lone_surrogates():
    nan = '{"id": "a", "prompt": "x", "candidates": [], "metadata": {"x": NaN}}'
    nul = json.dumps(prompt_line("b", prompt="bad \u0000 byte"))
    surrogate = json.dumps(prompt_line("c")).replace("Answer 1", "\\ud800 Answer")
    errors = errors_of(jsonl(nan, nul, surrogate))
    assert [line for line, _ in errors] == [1, 2, 3]
    assert "NaN" in errors[0][1]
    assert "NUL" in errors[1][1]
    assert "surrogate" in errors[2][1]


def test_it_rejects_deeply_nested_json_without_crashing():
    deep = '{"id": "a", "prompt": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    ((line, error),) = errors_of(jsonl(deep))
    assert line == 1
    assert error.startswith("invalid JSON")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1, 2], "each line must be a JSON object, not a list"),
        ('"just a string"', "each line must be a JSON object, not a string"),
        ({"prompt": "x", "candidates": []}, "missing field(s): 'id'"),
        ({"id": "a"}, "missing field(s): 'prompt', 'candidates'"),
        ({**prompt_line(), "extra": 1}, "the prompt has unknown field(s) 'extra'"),
        ({**prompt_line(), "id": ""}, "'id' must not be empty"),
        ({**prompt_line(), "id": True}, "'id' must be a string, not true/false"),
        ({**prompt_line(), "id": None}, "'id' must be a string, not null"),
        ({**prompt_line(), "id": 1.5}, "'id' must be a string, not a number"),
        ({**prompt_line(), "id": "x" * 256}, "'id' is longer than 255 characters"),
        ({**prompt_line(), "prompt": ""}, "'prompt' must not be empty"),
        ({**prompt_line(), "prompt": "   "}, "'prompt' must not be empty"),
        ({**prompt_line(), "prompt": []}, "'prompt' must not be an empty list"),
        ({**prompt_line(), "prompt": 3}, "'prompt' must be a string or a list of messages"),
        ({**prompt_line(), "prompt": {"a": 1}}, "'prompt' must be a string or a list"),
        ({**prompt_line(), "prompt": ["hi"]}, "prompt message 1 must be an object"),
        (
            {**prompt_line(), "prompt": [{"role": "robot", "content": "x"}]},
            "prompt message 1 has role 'robot'; use one of system, user, assistant, tool",
        ),
        ({**prompt_line(), "prompt": [{"content": "x"}]}, "prompt message 1 is missing 'role'"),
        ({**prompt_line(), "prompt": [{"role": "user"}]}, "prompt message 1 is missing 'content'"),
        (
            {**prompt_line(), "prompt": [{"role": "user", "content": 5}]},
            "prompt message 1 'content' must be a string, not a number",
        ),
        (
            {**prompt_line(), "prompt": [{"role": "user", "content": "x", "name": "n"}]},
            "prompt message 1 has unknown field(s) 'name'",
        ),
        ({**prompt_line(), "candidates": "c1"}, "'candidates' must be a list, not a string"),
        ({**prompt_line(n=1)}, "'candidates' needs at least 2 responses, got 1"),
        ({**prompt_line(), "candidates": []}, "'candidates' needs at least 2 responses, got 0"),
        ({**prompt_line(n=17)}, "'candidates' has 17 responses; at most 16"),
        ({**prompt_line(), "candidates": ["a", "b"]}, "candidate 1 must be an object"),
        (
            {**prompt_line(), "candidates": [{"id": "a", "text": "x"}, {"text": "y"}]},
            "candidate 2 is missing 'id'",
        ),
        (
            {**prompt_line(), "candidates": [{"id": "a", "text": "x"}, {"id": "b"}]},
            "candidate 2 is missing 'text'",
        ),
        (
            {**prompt_line(), "candidates": [{"id": "a", "text": "x"}, {"id": "b", "text": 3}]},
            "candidate 2 'text' must be a string, not a number",
        ),
        (
            {**prompt_line(), "candidates": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
            "duplicate candidate id 'a' in this prompt",
        ),
        (
            {
                **prompt_line(),
                "candidates": [{"id": "a", "text": "x", "model": 7}, {"id": "b", "text": "y"}],
            },
            "candidate 1 'model' must be a string, not a number",
        ),
        (
            {
                **prompt_line(),
                "candidates": [{"id": "a", "text": "x", "score": 1}, {"id": "b", "text": "y"}],
            },
            "candidate 1 has unknown field(s) 'score'",
        ),
        (
            {
                **prompt_line(),
                "candidates": [{"id": "a", "text": "x", "params": 1}, {"id": "b", "text": "y"}],
            },
            "candidate 1 'params' must be an object, not a number",
        ),
        ({**prompt_line(), "metadata": []}, "'metadata' must be an object, not a list"),
    ],
)
def test_it_explains_each_malformed_line(row, message):
    ((line, error),) = errors_of(jsonl(prompt_line("ok"), row))
    assert line == 2
    assert error.startswith(message), error


def test_it_reports_a_duplicate_prompt_id_with_the_first_line():
    errors = errors_of(jsonl(prompt_line("a"), prompt_line("b"), prompt_line("a")))
    assert errors == [(3, "duplicate prompt id 'a' (first on line 1)")]


def test_it_reports_every_error_in_one_pass():
    data = jsonl(prompt_line("a"), "nope", prompt_line("b", n=1), "", prompt_line("a"))
    errors = errors_of(data)
    assert [line for line, _ in errors] == [2, 3, 5]


def test_it_caps_the_listed_errors_but_counts_them_all():
    data = jsonl(*(["{bad"] * 50))
    with pytest.raises(ImportFormatError) as info:
        parse_jsonl(io.BytesIO(data), max_errors=10)
    assert len(info.value.errors) == 10
    assert info.value.total == 50
