"""manage.py export writes what the export endpoint streams, byte for byte."""

import pytest
from django.core.management import CommandError, call_command

from apps.judging.services import assignment_next, judgment_submit
from tests.conftest import prompt_line

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
