"""Exports that train as they are: every pairwise format of every kind of project (pairwise,
graded, listwise; string, conversation or mixed prompts), loaded as a training team loads it
with `datasets`, JSON Lines and Parquet, has what TRL's trainers rely on: one prompt kind per
file, no null-typed column, the types TRL reads. And the export endpoint's 400s, its content
negotiation, and the three doors (stream, background job, command) agreeing on the new
parameters."""

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from apps.exports.formats import TEXT_PROMPT_END, TEXT_RESPONSE_START
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line

datasets = pytest.importorskip(
    "datasets", reason="datasets is a dev dependency: pip install .[dev]"
)

URL = "/api/v1/projects/demo/export/"
JOBS = "/api/v1/projects/demo/exports/"
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2 + 2?"},
]
PROMPTS = {
    "string": [("s1", "What is 2 + 2?"), ("s2", "Name a prime.")],
    "conversation": [("c1", CONVERSATION), ("c2", [{"role": "user", "content": "Hi"}])],
    "mixed": [("s1", "What is 2 + 2?"), ("c1", CONVERSATION)],
}
SCHEMES = ("pairwise", "graded", "listwise")
# The pairwise formats, each with the parameters that change its shape.
EXPORTS: list[tuple[str, dict[str, str]]] = [
    ("trl", {}),
    ("trl", {"prompt_form": "text"}),
    ("trl", {"aggregate": "reliability"}),
    ("trl-implicit", {}),
    ("trl-implicit", {"prompt_form": "text"}),
    ("kto", {}),
    ("kto", {"prompt_form": "text", "both_bad": "include"}),
    ("hh-rlhf", {}),
    ("openai", {}),
]


def _build(project, annotators, import_rows, scheme, prompts):
    """Three candidates per prompt; every annotator prefers candidate A (c1) but the last,
    who prefers B once (graded: strengths 3, 1, -1 toward A; listwise: c1 > c2 > c3, the last
    annotator swapping the first two)."""
    project.scheme = scheme
    project.save()
    import_rows(*(prompt_line(pid, prompt=prompt, n=3) for pid, prompt in PROMPTS[prompts]))
    _vote_all(project, annotators)


def _vote_all(project, annotators):
    """Each annotator judges all they are served, by the project's scheme, as `_build` says."""
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            answer: dict[str, Any] = {"rationale": "Because."}
            if project.scheme == "listwise":
                ids = sorted(c.external_id for c in lease.shown)
                answer["ranking"] = ids if index < 2 else [ids[1], ids[0], *ids[2:]]
            elif project.scheme == "graded":
                a_left = lease.left_id == lease.comparison.candidate_a_id
                toward_a = [3, 1, -1][index % 3]
                # Below 0 the left response is better.
                answer["strength"] = -toward_a if a_left else toward_a
            else:
                a_left = lease.left_id == lease.comparison.candidate_a_id
                answer["choice"] = "left" if (index % 3 < 2) == a_left else "right"
            if project.criterion_names:
                same = answer.get("strength", answer.get("choice"))
                answer["criteria"] = dict.fromkeys(project.criterion_names, same)
            judgment_submit(assignment_id=lease.pk, annotator=user, **answer)


@pytest.fixture(params=[(s, p) for s in SCHEMES for p in PROMPTS], ids=lambda v: "-".join(v))
def kind(request, project, annotators, import_rows) -> tuple[str, str]:
    scheme, prompts = request.param
    _build(project, annotators, import_rows, scheme, prompts)
    return scheme, prompts


def _flags(params: dict[str, str]) -> list[str]:
    return [f"--{name.replace('_', '-')}={value}" for name, value in params.items()]


def _load(path: Path, tmp_path: Path) -> Any:
    loader = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(
        loader, data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )


def null_features(feature: Any, path: str = "") -> list[str]:
    """Where a feature (or a nested one) is typed null."""
    if isinstance(feature, dict | datasets.Features):
        return [n for name, sub in feature.items() for n in null_features(sub, f"{path}.{name}")]
    if isinstance(feature, datasets.Value):
        return [path] if feature.dtype == "null" else []
    inner = getattr(feature, "feature", None)
    return null_features(inner, path + "[]") if inner is not None else []


def is_messages(feature: Any) -> bool:
    """A list of {role, content} strings, as TRL's conversational datasets are typed."""
    return (
        isinstance(feature, datasets.List)
        and isinstance(feature.feature, dict)
        and set(feature.feature) == {"role", "content"}
        and all(feature.feature[key] == datasets.Value("string") for key in ("role", "content"))
    )


STRING = datasets.Value("string")


def assert_trainable(dataset: Any, format: str, params: dict[str, str], scheme: str) -> None:
    features = dataset.features
    assert dataset.num_rows > 0
    assert null_features(features) == [], features
    conversational = params.get("prompt_form", "conversational") == "conversational"
    texts = {
        "trl": ("prompt", "chosen", "rejected"),
        "trl-implicit": ("chosen", "rejected"),
        "kto": ("prompt", "completion"),
    }.get(format, ())
    rows = dataset.to_list()
    for name in texts:
        if conversational:
            assert is_messages(features[name]), (name, features[name])
            assert all(isinstance(row[name], list) for row in rows)
        else:
            assert features[name] == STRING, (name, features[name])
    if format in ("trl", "kto") and conversational:
        response = "chosen" if format == "trl" else "completion"
        assert all([m["role"] for m in row[response]] == ["assistant"] for row in rows)
    if format in ("trl", "kto") and not conversational:
        response = "chosen" if format == "trl" else "completion"
        for row in rows:
            # The prompt ends where no tokenizer merges it with the response's first token.
            assert row["prompt"].startswith("\n\nHuman: ")
            assert row["prompt"].endswith(TEXT_PROMPT_END)
            assert row[response].startswith(TEXT_RESPONSE_START)
            assert not row[response][len(TEXT_RESPONSE_START) :].startswith(" ")
    if format in ("trl", "trl-implicit", "hh-rlhf"):
        # TRL's RewardTrainer reads margin on every row once the column exists.
        assert ("margin" in features) == (scheme == "graded")
        if scheme == "graded":
            assert features["margin"] == datasets.Value("float64")
            assert all(isinstance(row["margin"], float) for row in rows)
    if format == "hh-rlhf":
        assert features["chosen"] == features["rejected"] == STRING
    if format == "kto":
        assert features["label"] == datasets.Value("bool")
        assert {row["label"] for row in rows} == {True, False}
    if format == "openai":
        assert is_messages(features["input"]["messages"])
        assert is_messages(features["preferred_output"])
        assert is_messages(features["non_preferred_output"])
    reliability = params.get("aggregate") == "reliability"
    assert ("label_confidence" in features) == (reliability and format != "openai")
    if reliability and format != "openai":
        assert features["label_confidence"] == datasets.Value("float64")
    if format != "openai":
        assert ("chosen_position" in features) == (scheme != "listwise")


def test_every_pairwise_format_of_every_kind_of_project_loads_as_trl_reads_it(kind, tmp_path):
    scheme, _ = kind
    for index, (format, params) in enumerate(EXPORTS):
        for suffix in ("jsonl", "parquet"):
            path = tmp_path / f"{index}-{format}.{suffix}"
            call_command("export", "demo", "--format", format, *_flags(params), "-o", str(path))
            dataset = _load(path, tmp_path)
            assert_trainable(dataset, format, params, scheme)
            if scheme == "graded" and format == "trl":
                assert dataset[0]["margin"] == pytest.approx(0.3333)  # (1 + 1/3 - 1/3) / 3
            if suffix == "jsonl":
                jsonl = dataset.to_list()
            else:
                # The same rows, the same types: the Parquet file is the JSON Lines file.
                assert dataset.to_list() == jsonl, (format, params)


def test_the_text_form_is_the_hh_transcript_cut_before_the_response(kind, tmp_path):
    """prompt + chosen is exactly hh-rlhf's chosen transcript, row for row."""

    def rows(format: str, *flags: str) -> list[dict]:
        path = tmp_path / f"{format}-{len(flags)}.jsonl"
        call_command("export", "demo", "--format", format, *flags, "-o", str(path))
        return [json.loads(line) for line in path.read_text().splitlines()]

    text = rows("trl", "--prompt-form", "text")
    hh = rows("hh-rlhf")
    assert [r["prompt"] + r["chosen"] for r in text] == [r["chosen"] for r in hh]
    assert [r["prompt"] + r["rejected"] for r in text] == [r["rejected"] for r in hh]
    implicit = rows("trl-implicit", "--prompt-form", "text")
    assert [r["chosen"] for r in implicit] == [r["chosen"] for r in hh]


def test_arena_is_what_fastchats_elo_analysis_reads(project, annotators, import_rows, tmp_path):
    _build(project, annotators, import_rows, "pairwise", "mixed")
    lines = tmp_path / "arena.jsonl"
    call_command("export", "demo", "--format", "arena", "-o", str(lines))
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert rows and all(row["anony"] is True for row in rows)
    # The number of user turns: one for a string prompt, two in CONVERSATION.
    assert {row["question_id"]: row["turn"] for row in rows} == {"s1": 1, "c1": 2}
    # lines=false: one JSON array, which pandas reads without lines=True (--clean-battle-file).
    array = tmp_path / "arena.json"
    call_command("export", "demo", "--format", "arena", "--lines", "false", "-o", str(array))
    battles = pd.read_json(array)
    assert battles.to_dict("records") == pd.read_json(lines, lines=True).to_dict("records")
    assert {"model_a", "model_b", "winner", "judge", "anony", "turn", "tstamp"} <= set(battles)
    assert json.loads(array.read_text()) == rows
    for path in (lines, array):
        dataset = _load(path, tmp_path)
        assert null_features(dataset.features) == []
        assert dataset.features["anony"] == datasets.Value("bool")
        assert dataset.features["turn"] == datasets.Value("int64")
    parquet = tmp_path / "arena.parquet"
    call_command("export", "demo", "--format", "arena", "-o", str(parquet))
    assert pq.read_table(parquet).to_pylist() == rows


@pytest.mark.parametrize("format", ["trl", "arena"])
def test_an_empty_json_array_is_still_an_array(api, bob, project, format):
    response = api(bob).get(URL, {"format": format, "lines": "false"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(b"".join(response.streaming_content)) == []


def test_the_json_array_streams_across_chunks(api, bob, project, annotators, import_rows):
    import apps.exports.api as export_api

    _build(project, annotators, import_rows, "pairwise", "mixed")
    client = api(bob)
    whole = [
        json.loads(line)
        for line in b"".join(client.get(URL).streaming_content).split(b"\n")
        if line
    ]
    for size in (1, 2, len(whole), len(whole) + 1):
        export_api.LINES_PER_CHUNK, before = size, export_api.LINES_PER_CHUNK
        try:
            body = b"".join(client.get(URL, {"lines": "false"}).streaming_content)
        finally:
            export_api.LINES_PER_CHUNK = before
        assert json.loads(body) == whole, size


# --- the three doors agree, and refuse alike --------------------------------------------------


@pytest.mark.parametrize(
    ("format", "params"),
    [("trl", {"prompt_form": "text"}), ("kto", {"prompt_form": "text"}), ("arena", {})],
)
def test_the_three_doors_write_the_same_rows(
    api, bob, project, annotators, import_rows, tmp_path, format, params
):
    _build(project, annotators, import_rows, "graded", "mixed")
    client = api(bob)
    streamed = b"".join(client.get(URL, {"format": format, **params}).streaming_content)
    job = client.post(JOBS, {"format": format, **params}, format="json").json()
    assert job["status"] == "done", job
    assert b"".join(client.get(job["download"]).streaming_content) == streamed
    target = tmp_path / "out.jsonl"
    call_command("export", "demo", "--format", format, *_flags(params), "-o", str(target))
    assert target.read_bytes() == streamed
    job = client.post(
        JOBS, {"format": format, "file_format": "parquet", **params}, format="json"
    ).json()
    table = pq.read_table(io.BytesIO(b"".join(client.get(job["download"]).streaming_content)))
    assert table.to_pylist() == [json.loads(line) for line in streamed.splitlines()]


def test_arena_on_a_listwise_project_is_a_400_in_every_door(
    api, bob, project, annotators, import_rows, tmp_path
):
    _build(project, annotators, import_rows, "listwise", "string")
    client = api(bob)
    response = client.get(URL, {"format": "arena"})
    assert response.status_code == 400
    assert "listwise" in response.json()["format"][0]
    response = client.post(JOBS, {"format": "arena", "file_format": "parquet"}, format="json")
    assert response.status_code == 400 and "listwise" in response.json()["format"][0]
    with pytest.raises(CommandError, match="format: arena has one row per pairwise vote"):
        call_command("export", "demo", "--format", "arena", "-o", str(tmp_path / "a.jsonl"))
    # The pairwise formats export the rankings' pairs instead.
    assert client.get(URL, {"format": "trl"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt_form": "chat"}, "prompt_form"),
        ({"format": "hh-rlhf", "prompt_form": "text"}, "prompt_form"),
        ({"format": "arena", "prompt_form": "text"}, "prompt_form"),
        ({"lines": "no"}, "lines"),
        ({"format": "card", "lines": "false"}, "lines"),
    ],
)
def test_bad_new_parameters_are_400s(api, bob, project, params, field):
    response = api(bob).get(URL, params)
    assert response.status_code == 400
    assert field in response.json()
    if "format" not in params or params["format"] != "card":
        body = {k: v for k, v in params.items() if k != "lines"}
        if field != "lines":
            job = api(bob).post(JOBS, body, format="json")
            assert job.status_code == 400 and field in job.json()


def test_the_command_refuses_lines_with_parquet(project, tmp_path):
    with pytest.raises(CommandError, match="lines: Parquet has no lines"):
        call_command("export", "demo", "--lines", "false", "-o", str(tmp_path / "x.parquet"))
    with pytest.raises(CommandError, match="prompt_form"):
        call_command("export", "demo", "--format", "arena", "--prompt-form", "text")


# --- content negotiation ----------------------------------------------------------------------

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("params", "accept", "status", "content_type"),
    [
        ({}, None, 200, "application/jsonl"),
        ({}, "application/jsonl", 200, "application/jsonl"),
        ({}, "application/jsonl; charset=utf-8", 200, "application/jsonl"),
        ({}, "*/*", 200, "application/jsonl"),
        ({}, "application/*", 200, "application/jsonl"),
        ({}, BROWSER, 200, "application/jsonl"),
        ({"lines": "false"}, "application/json", 200, "application/json"),
        ({"format": "card"}, "text/markdown", 200, "text/markdown; charset=utf-8"),
        ({"format": "card"}, "text/*", 200, "text/markdown; charset=utf-8"),
        ({"format": "card"}, BROWSER, 200, "text/markdown; charset=utf-8"),
        # What the export does not produce: a clear 406, in JSON.
        ({}, "text/html", 406, "application/json"),
        ({}, "application/json", 406, "application/json"),
        ({}, "text/markdown", 406, "application/json"),
        ({}, "application/jsonl;q=0, */*;q=0.1", 406, "application/json"),
        ({"format": "card"}, "application/jsonl", 406, "application/json"),
    ],
)
def test_the_export_takes_every_media_type_it_documents(
    api, bob, project, params, accept, status, content_type
):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api(bob).get(URL, params, **headers)
    assert response.status_code == status, getattr(response, "content", b"")
    assert response["Content-Type"] == content_type
    if status == 406:
        assert "detail" in response.json()


def test_a_bad_parameter_is_a_json_400_whatever_the_accept_header(api, bob, project):
    for accept in ("application/jsonl", "text/markdown"):
        response = api(bob).get(URL, {"format": "nope"}, HTTP_ACCEPT=accept)
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert "format" in response.json()


def test_the_schema_documents_the_media_types_and_parameters(api, alice):
    schema = api(alice).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    export = schema["paths"]["/api/v1/projects/{slug}/export/"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "application/jsonl",
        "application/json",
        "text/markdown",
    }
    assert "406" in export["responses"]
    parameters = {p["name"]: p for p in export["parameters"]}
    assert set(parameters["prompt_form"]["schema"]["enum"]) == {"conversational", "text"}
    assert set(parameters["lines"]["schema"]["enum"]) == {"true", "false"}


@pytest.mark.django_db
def test_the_demo_projects_export_as_trl_reads_them(settings, tmp_path):
    """The exports a training team ran TRL on: every demo project, every pairwise format."""
    from django.contrib.auth.models import User

    from apps.projects.models import Project

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", stdout=io.StringIO(), stderr=io.StringIO())
    projects = list(Project.objects.order_by("slug"))
    assert {p.scheme for p in projects} == {"pairwise", "graded", "listwise"}
    for project in projects:
        members = User.objects.filter(
            memberships__project=project, memberships__role="annotator"
        ).order_by("username")
        _vote_all(project, list(members))
    checked = 0
    for project in projects:
        for index, (format, params) in enumerate(EXPORTS):
            for suffix in ("jsonl", "parquet"):
                path = tmp_path / f"{project.slug}-{index}-{format}.{suffix}"
                flags = _flags(params)
                call_command("export", project.slug, "--format", format, *flags, "-o", str(path))
                if path.stat().st_size == 0 or pq_rows(path) == 0:
                    continue
                assert_trainable(_load(path, tmp_path), format, params, project.scheme)
                checked += 1
    assert checked == len(projects) * len(EXPORTS) * 2  # none of them empty


def pq_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows if path.suffix == ".parquet" else 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_parquet_column_of_any_format_is_typed_null(
    project, annotators, import_rows, tmp_path, scheme
):
    """Every format the project takes, as Parquet: every column typed, even one that is null on
    every row of the file (judgments' `strength` outside graded projects, `ranking` outside
    listwise ones)."""
    from apps.exports.formats import FORMATS

    _build(project, annotators, import_rows, scheme, "mixed")
    refused = {"listwise": "arena"}.get(scheme, "listwise")
    for format in FORMATS:
        if format == refused:
            continue
        path = tmp_path / f"{format}.parquet"
        call_command("export", "demo", "--format", format, "-o", str(path))
        dataset = _load(path, tmp_path)
        assert dataset.num_rows > 0, format
        assert null_features(dataset.features) == [], (format, dataset.features)
