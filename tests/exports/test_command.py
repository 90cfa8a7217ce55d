"""manage.py export writes what the export endpoint streams, byte for byte; and as Parquet, what
a background export job writes."""

import io

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from apps.exports.formats import FORMATS
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line
from tests.exports.test_jobs import _expected_rows

URL = "/api/v1/projects/demo/export/"


@pytest.fixture
def judged(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(3)))
    for user in annotators:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    return project


@pytest.mark.parametrize(
    ("format", "extra", "query"),
    [
        ("trl", [], {}),
        ("judgments", [], {}),
        ("kto", ["--both-bad", "include"], {"both_bad": "include"}),
        ("arena", ["--include-ties", "false"], {"include_ties": "false"}),
    ],
)
def test_the_command_writes_the_endpoints_bytes(api, bob, judged, tmp_path, format, extra, query):
    target = tmp_path / "out.jsonl"
    call_command("export", "demo", "--format", format, *extra, "--output", str(target))
    response = api(bob).get(URL, {"format": format, **query})
    assert target.read_bytes() == b"".join(response.streaming_content)
    assert target.read_bytes().count(b"\n") > 0


def test_the_command_says_what_is_wrong(judged):
    with pytest.raises(CommandError, match="No project"):
        call_command("export", "nope")
    with pytest.raises(CommandError, match="both_bad"):
        call_command("export", "demo", "--format", "trl", "--both-bad", "include")
    with pytest.raises(CommandError, match="batch"):
        call_command("export", "demo", "--batch", "x")


@pytest.fixture
def mixed(project, annotators, import_rows):
    """String prompts and a conversation (all written as messages in the conversational form),
    judged A, A, tie (A wherever the queue showed it, so every comparison has a winner
    whatever the sides drawn); no rankings (listwise: a 400 in every door)."""
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]
    import_rows(prompt_line("s1", n=3), prompt_line("s2"), prompt_line("c1", prompt=conversation))
    for user, vote in zip(annotators, ["a", "a", "tie"], strict=True):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            a_left = lease.left_id == lease.comparison.candidate_a_id
            choice = vote if vote == "tie" else ("left" if a_left else "right")
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
    return project


PARAMETERS = {"kto": {"both_bad": "include"}, "arena": {"include_ties": "false"}}


@pytest.mark.parametrize("format", [f for f in FORMATS if f != "listwise"])
def test_the_commands_parquet_is_the_jobs_parquet_and_the_jsonl_rows(
    api, bob, mixed, settings, tmp_path, format
):
    settings.EXPORT_ROOT = tmp_path / "exports"
    params = PARAMETERS.get(format, {})
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in params.items()]
    target = tmp_path / "out.parquet"
    call_command("export", "demo", "--format", format, *flags, "--output", str(target))
    client = api(bob)
    job = client.post(
        "/api/v1/projects/demo/exports/",
        {"format": format, "file_format": "parquet", **params},
        format="json",
    ).json()
    assert job["status"] == "done", job
    from_job = pq.read_table(io.BytesIO(b"".join(client.get(job["download"]).streaming_content)))

    from_command = pq.read_table(target)

    assert from_command.schema == from_job.schema
    assert from_command.to_pylist() == from_job.to_pylist()
    streamed = b"".join(client.get(URL, {"format": format, **params}).streaming_content)
    expected = _expected_rows(streamed, format)
    assert expected
    assert from_command.to_pylist() == expected


def test_listwise_on_a_pairwise_project_is_refused_by_every_door(api, bob, mixed, tmp_path):
    """No ranking can ever be in it: an empty file `datasets` cannot load, so a 400 instead."""
    client = api(bob)
    response = client.get(URL, {"format": "listwise"})
    assert response.status_code == 400
    assert "listwise" in response.json()["format"][0]
    response = client.post("/api/v1/projects/demo/exports/", {"format": "listwise"}, format="json")
    assert response.status_code == 400 and "format" in response.json()
    with pytest.raises(CommandError, match="format: listwise has one row per ranked prompt"):
        call_command("export", "demo", "--format", "listwise", "-o", str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


def test_file_format_parquet_writes_parquet_whatever_the_name(judged, tmp_path):
    target = tmp_path / "out.bin"
    call_command("export", "demo", "--format", "trl", "--file-format", "parquet", "-o", str(target))
    assert pq.read_table(target).num_rows == 9
    jsonl = tmp_path / "rows.parquet"
    call_command("export", "demo", "--format", "trl", "--file-format", "jsonl", "-o", str(jsonl))
    assert jsonl.read_bytes().count(b"\n") == 9  # as asked, whatever the name


def test_parquet_is_not_written_to_stdout(judged, capsysbinary):
    with pytest.raises(CommandError, match="Parquet is not written to stdout"):
        call_command("export", "demo", "--file-format", "parquet")
    assert capsysbinary.readouterr().out == b""
    with pytest.raises(CommandError, match="card is Markdown"):
        call_command("export", "demo", "--format", "card", "-o", "card.parquet")


def test_the_output_appears_whole_and_names_the_next_since(judged, tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"an older export\n")
    err = io.StringIO()
    call_command("export", "demo", "--format", "judgments", "-o", str(target), stderr=err)
    assert target.read_bytes().count(b"\n") == 27  # 9 comparisons, 3 votes each
    assert not target.read_bytes().startswith(b"an older")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no partial file left
    assert err.getvalue().startswith("next since: ")
    err = io.StringIO()
    call_command("export", "demo", "-o", str(tmp_path / "out.parquet"), stderr=err)
    assert err.getvalue().startswith("next since: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.parquet"]


def test_an_output_that_cannot_be_written_is_a_clear_error(judged, tmp_path):
    with pytest.raises(CommandError, match=r"output: cannot write .*missing"):
        call_command("export", "demo", "-o", str(tmp_path / "missing" / "out.jsonl"))
