"""Importing prompts with no or too few candidates (candidates optional), for generation: the
format, the store (both writers), honeypots, the background run, and every door."""

import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import transaction

from apps.audit.models import AuditAction
from apps.batches import services
from apps.batches.honeypots import HoneypotMaker
from apps.batches.import_format import (
    ImportFormatError,
    ParsedCandidate,
    ParsedPrompt,
    parse_jsonl,
)
from apps.batches.models import Batch, BatchSource, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.selectors import (
    batch_awaiting_candidates,
    candidates_needed,
    prompts_awaiting_candidates,
)
from apps.batches.services import batch_import, batch_import_stored
from apps.projects.models import Project
from apps.projects.services import project_create
from tests.batches.test_honeypots import rich_line
from tests.conftest import events, jsonl, prompt_line

URL = "/api/v1/projects/demo/batches/"


def bare(pid: str) -> dict[str, Any]:
    """A prompt with no `candidates` at all."""
    return {"id": pid, "prompt": f"Question {pid}?"}


def load(project: Project, *rows: Any, **options: Any) -> Batch:
    data = jsonl(*rows)
    batch = batch_import(
        project=project, source=io.BytesIO(data), size=len(data), background=False, **options
    )
    batch.refresh_from_db()
    return batch


def counts() -> tuple[int, int, int, int]:
    return (
        Batch.objects.count(),
        Prompt.objects.count(),
        Candidate.objects.count(),
        Comparison.objects.count(),
    )


@pytest.fixture
def listwise(project: Project) -> Project:
    project.scheme = "listwise"
    project.full_clean()
    project.save()
    return project


# -- the format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "count"),
    [
        (bare("p"), 0),
        ({**bare("p"), "candidates": []}, 0),
        ({**bare("p"), "candidates": None}, 0),
        (prompt_line("p", n=1), 1),
        (prompt_line("p", n=2), 2),
    ],
)
def test_the_option_takes_a_prompt_without_enough_candidates(row, count):
    [prompt] = parse_jsonl([jsonl(row)], candidates_optional=True)
    assert len(prompt.candidates) == count


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (bare("p"), "missing field(s): 'candidates'"),
        ({**bare("p"), "candidates": []}, "needs at least 2 responses, got 0"),
        ({**bare("p"), "candidates": None}, "'candidates' must be a list, not null"),
        (prompt_line("p", n=1), "needs at least 2 responses, got 1"),
    ],
)
def test_without_the_option_the_error_says_how_to_import_prompts_only(row, fragment):
    with pytest.raises(ImportFormatError) as caught:
        parse_jsonl([jsonl(row)])
    [error] = caught.value.errors
    assert fragment in error.error
    if "null" not in fragment:  # a wrong type is not a missing candidate
        for name in ("candidates=optional", "--candidates-optional", "'Candidates optional'"):
            assert name in error.error


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (prompt_line("p", n=17), "'candidates' has 17 responses; at most 16"),
        ({**bare("p"), "candidates": [{"id": "a"}]}, "candidate 1 is missing 'text'"),
        ({**bare("p"), "candidates": "c1"}, "'candidates' must be a list, not a string"),
        ({**bare("p"), "gold": "tie"}, "'gold' needs the prompt's candidates (at least 2)"),
        (
            prompt_line("p", n=1, gold={"preferred": "c1"}),
            "'gold' needs the prompt's candidates (at least 2); this prompt has 1",
        ),
    ],
)
def test_the_other_checks_stay_with_the_option(row, fragment):
    with pytest.raises(ImportFormatError) as caught:
        parse_jsonl([jsonl(row)], candidates_optional=True)
    assert fragment in caught.value.errors[0].error


def test_candidates_needed_by_scheme(project):
    assert candidates_needed(project) == 2
    assert candidates_needed("graded") == 2
    assert candidates_needed("listwise") == 3


# -- the service -------------------------------------------------------------------------------


def test_a_prompts_only_file_is_stored_without_comparisons(project):
    batch = load(project, bare("a"), {**bare("b"), "candidates": []}, candidates_optional=True)
    assert batch.status == BatchStatus.ACTIVE and batch.candidates_optional
    assert (batch.prompt_count, batch.comparison_count) == (2, 0)
    assert counts() == (1, 2, 0, 0)
    assert prompts_awaiting_candidates(batch) == 2
    started = events(AuditAction.IMPORT_STARTED)[-1]
    finished = events(AuditAction.IMPORT_FINISHED)[-1]
    assert started.details["candidates_optional"] is True
    assert finished.details["candidates_optional"] is True
    assert finished.details["awaiting_candidates"] == 2


def test_without_the_option_nothing_is_stored_and_the_audit_says_nothing_of_it(project):
    with pytest.raises(ImportFormatError) as caught:
        load(project, prompt_line("a"), bare("b"))
    assert [e.line for e in caught.value.errors] == [2]
    assert "candidates=optional" in caught.value.errors[0].error
    assert counts() == (0, 0, 0, 0)
    assert "candidates_optional" not in events(AuditAction.IMPORT_FAILED)[-1].details
    batch = load(project, prompt_line("a"))
    assert not batch.candidates_optional
    assert "candidates_optional" not in events(AuditAction.IMPORT_STARTED)[-1].details
    assert "candidates_optional" not in events(AuditAction.IMPORT_FINISHED)[-1].details
    assert prompts_awaiting_candidates(batch) == 0


def test_a_mixed_file_forms_the_pairs_of_the_prompts_that_have_them(project):
    batch = load(
        project,
        prompt_line("three", n=3),
        bare("none"),
        prompt_line("one", n=1),
        prompt_line("two", n=2),
        prompt_line("also-three", n=3),
        candidates_optional=True,
    )
    assert (batch.prompt_count, batch.comparison_count) == (5, 3 + 1 + 3)
    per_prompt = {
        p.external_id: (p.candidates.count(), Comparison.objects.filter(prompt=p).count())
        for p in Prompt.objects.filter(batch=batch)
    }
    assert per_prompt == {
        "three": (3, 3),
        "none": (0, 0),
        "one": (1, 0),
        "two": (2, 1),
        "also-three": (3, 3),
    }
    assert prompts_awaiting_candidates(batch) == 2
    annotated = Batch.objects.annotate(n=batch_awaiting_candidates()).get(pk=batch.pk)
    assert annotated.n == 2
    # Gold items keep their candidates: a gold prompt beside prompts waiting for theirs.
    gold = load(
        project,
        prompt_line("g", n=2, gold={"preferred": "c1"}),
        bare("g-none"),
        candidates_optional=True,
    )
    assert Comparison.objects.filter(batch=gold, is_gold=True).count() == 1


def test_the_progress_counts_the_rows_written(project):
    data = jsonl(prompt_line("a", n=4), bare("b"), prompt_line("c", n=1))
    totals = services._check_file(project, io.BytesIO(data), candidates_optional=True)
    assert (totals.prompts, totals.candidates, totals.comparisons, totals.awaiting) == (3, 5, 6, 2)
    seen: list[tuple[int, int]] = []
    with transaction.atomic():
        batch = Batch.objects.create(project=project, candidates_optional=True)
        services._batch_store(
            batch=batch,
            prompts=services._prompts_to_store(io.BytesIO(data), candidates_optional=True),
            totals=totals,
            progress=lambda done, total: seen.append((done, total)),
        )
    assert seen[-1] == (totals.rows, totals.rows) == (3 + 5 + 6,) * 2
    assert sum(counts()[1:]) == totals.rows


def test_a_listwise_prompt_with_fewer_than_3_waits_with_the_option(listwise):
    batch = load(
        listwise,
        prompt_line("four", n=4),
        bare("none"),
        prompt_line("two", n=2),
        prompt_line("three", n=3),
        candidates_optional=True,
    )
    assert (batch.prompt_count, batch.comparison_count) == (4, 2)
    ranked = Comparison.objects.filter(batch=batch).order_by("id")
    assert [len(c.candidate_ids) for c in ranked] == [4, 3]
    assert prompts_awaiting_candidates(batch) == 2  # none and two: a ranking needs 3


@pytest.mark.parametrize(
    ("row", "fragment", "hint"),
    [
        (prompt_line("nine", n=9), "this prompt has 9", False),
        (prompt_line("g", n=3, gold="tie"), "takes no gold items", False),
    ],
)
def test_listwise_still_refuses_too_many_or_gold_with_the_option(listwise, row, fragment, hint):
    with pytest.raises(ImportFormatError) as caught:
        load(listwise, prompt_line("fine", n=3), row, candidates_optional=True)
    [error] = caught.value.errors
    assert error.line == 2 and fragment in error.error
    assert ("candidates=optional" in error.error) is hint


def test_listwise_without_the_option_says_how_to_import_prompts_only(listwise):
    with pytest.raises(ImportFormatError) as caught:
        load(listwise, prompt_line("fine", n=3), prompt_line("two", n=2))
    [error] = caught.value.errors
    assert "ranks 3 to 8 responses per prompt; this prompt has 2" in error.error
    assert "--candidates-optional" in error.error


# -- honeypots ---------------------------------------------------------------------------------


def test_honeypots_skip_prompts_without_enough_candidates(project, settings):
    project.gold_rate = 0.5
    project.honeypot_rate = 1.0
    project.save()
    settings.IMPORT_HONEYPOT_SEED = "optional"
    rows = []
    for i in range(12):
        rows += [rich_line(f"r{i}", n=2), bare(f"e{i}"), {**rich_line(f"s{i}", n=1)}]
    batch = load(project, *rows, candidates_optional=True)
    degraded = Candidate.objects.exclude(degradation="").select_related("prompt")
    assert degraded.count() == 12
    assert {c.prompt.external_id for c in degraded} == {f"r{i}" for i in range(12)}
    assert not Candidate.objects.filter(prompt__external_id__startswith="e").exists()
    assert batch.comparison_count == 12 + 12 == Comparison.objects.filter(batch=batch).count()
    assert prompts_awaiting_candidates(batch) == 24


def test_the_maker_never_takes_a_prompt_without_candidates_as_its_source():
    def prompt(pid: str, *texts: str) -> ParsedPrompt:
        return ParsedPrompt(
            line=1,
            external_id=pid,
            content=pid,
            metadata={},
            candidates=[
                ParsedCandidate(external_id=f"c{i}", text=t, model="m", params={}, metadata={})
                for i, t in enumerate(texts)
            ],
        )

    maker = HoneypotMaker(rate=1.0, seed="s")
    assert maker.make(prompt("empty")) is None
    assert maker.make(prompt("single", "Yes.")) is None
    # Off topic is the only kind that applies to these short answers: it takes the single
    # prompt's answer (a real response), never anything of the empty one.
    made = maker.make(prompt("pair", "No.", "Maybe."))
    assert made is not None and made.kind == "off_topic" and made.candidate.text == "Yes."
    assert made.source in (0, 1)


# -- the background run ------------------------------------------------------------------------


def test_the_background_run_reads_the_option_from_the_batch(project, bob):
    data = jsonl(prompt_line("a", n=3), bare("b"))
    for optional in (True, False):
        batch = Batch.objects.create(
            project=project,
            status=BatchStatus.IMPORTING,
            created_by=bob,
            candidates_optional=optional,
            name=f"optional={optional}",
        )
        BatchSource.objects.create(batch=batch, data=data)
        batch_import_stored(batch_id=batch.pk)
        batch.refresh_from_db()
        if optional:
            assert (batch.status, batch.prompt_count, batch.comparison_count) == ("active", 2, 3)
            assert prompts_awaiting_candidates(batch) == 1
        else:
            assert batch.status == "failed"
            assert batch.errors[0]["line"] == 2
            assert "candidates=optional" in batch.errors[0]["error"]


def test_a_background_upload_keeps_the_option(
    api, bob, project, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_BYTES = 10
    data = jsonl(*(bare(f"p{i}") for i in range(5)), prompt_line("full", n=2))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(bob).post(
            URL + "?candidates=optional", data, content_type="application/jsonl"
        )
    assert response.status_code in (201, 202), response.content
    batch = Batch.objects.get(pk=response.json()["id"])
    assert batch.candidates_optional
    assert (batch.status, batch.prompt_count, batch.comparison_count) == ("active", 6, 1)
    started = events(AuditAction.IMPORT_STARTED, target_id=str(batch.pk))
    assert started and started[-1].details["background"] is True
    assert started[-1].details["candidates_optional"] is True
    detail = api(bob).get(f"/api/v1/batches/{batch.pk}/").json()
    assert (detail["candidates_optional"], detail["awaiting_candidates"]) == (True, 5)


# -- the doors ---------------------------------------------------------------------------------


def test_the_api_imports_prompts_only_with_candidates_optional(api, bob, project):
    data = jsonl(bare("a"), prompt_line("b", n=1), prompt_line("c", n=3))
    response = api(bob).post(URL + "?candidates=optional", data, content_type="application/jsonl")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["prompts"], body["comparisons"]) == (3, 3)
    assert (body["candidates_optional"], body["awaiting_candidates"]) == (True, 2)
    listed = api(bob).get(URL).json()["results"]
    assert [(b["id"], b["awaiting_candidates"]) for b in listed] == [(body["id"], 2)]


def test_the_api_takes_the_option_as_a_multipart_field(api, bob, project):
    upload = SimpleUploadedFile("p.jsonl", jsonl(bare("a"), bare("b")))
    response = api(bob).post(URL, {"file": upload, "candidates": "optional"}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["awaiting_candidates"] == 2


def test_the_api_refuses_prompts_only_without_the_option(api, bob, project):
    for query in ("", "?candidates=required"):
        response = api(bob).post(URL + query, jsonl(bare("a")), content_type="application/jsonl")
        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert error["line"] == 1 and "candidates=optional" in error["error"]
    assert counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("value", ["yes", "true", "1", "Optional", "x" * 100])
def test_the_api_refuses_a_bad_candidates_value(api, bob, project, value):
    response = api(bob).post(
        f"{URL}?candidates={value}", jsonl(bare("a")), content_type="application/jsonl"
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "candidates" in text and "'optional'" in text and "'required'" in text
    assert len(text) < 600  # the value is cut, not echoed whole
    upload = SimpleUploadedFile("p.jsonl", jsonl(bare("a")))
    response = api(bob).post(URL, {"file": upload, "candidates": value}, format="multipart")
    assert response.status_code == 400 and "'optional'" in response.content.decode()
    assert counts() == (0, 0, 0, 0)


def test_the_admin_upload_has_the_box(client, bob, project):
    client.force_login(bob)
    page = client.get("/admin/batches/batch/upload/").content.decode()
    assert 'name="candidates_optional"' in page and "Candidates optional" in page
    refused = client.post(
        "/admin/batches/batch/upload/",
        {"project": project.pk, "file": SimpleUploadedFile("p.jsonl", jsonl(bare("a")))},
    )
    assert "Nothing was stored" in refused.content.decode()
    assert "the &#x27;Candidates optional&#x27; box" in refused.content.decode()
    assert counts() == (0, 0, 0, 0)
    response = client.post(
        "/admin/batches/batch/upload/",
        {
            "project": project.pk,
            "candidates_optional": "on",
            "file": SimpleUploadedFile("p.jsonl", jsonl(bare("a"), prompt_line("b", n=2))),
        },
        follow=True,
    )
    html = response.content.decode()
    batch = Batch.objects.get()
    assert batch.candidates_optional and batch.comparison_count == 1
    assert "1 prompt(s) await candidates" in html
    change = client.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert "prompts awaiting candidates" in change.lower()


def test_the_command_imports_prompts_only_with_the_flag(project, tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl(bare("a"), bare("b"), prompt_line("c", n=2)))
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_batch", "demo", str(path))
    assert "--candidates-optional" in capsys.readouterr().err
    assert counts() == (0, 0, 0, 0)
    call_command("import_batch", "demo", str(path), "--candidates-optional")
    out = capsys.readouterr().out
    assert "3 prompts, 1 comparisons" in out and "2 prompt(s) await candidates" in out
    assert Batch.objects.get().candidates_optional


# -- both writers ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_copy_and_bulk_writers_store_the_same_short_prompts(project, alice, settings):
    settings.IMPORT_HONEYPOT_SEED = "short"
    Project.objects.filter(pk=project.pk).update(gold_rate=0.5, honeypot_rate=0.7)
    project.refresh_from_db()
    twin = project_create(
        slug="twin", name="Twin", created_by=alice, gold_rate=0.5, honeypot_rate=0.7
    )
    rows = []
    for i in range(15):
        rows += [rich_line(f"r{i}", n=3), bare(f"e{i}"), rich_line(f"s{i}", n=1)]
    prompts = list(services._prompts_to_store(io.BytesIO(jsonl(*rows)), candidates_optional=True))

    def stored(target: Project) -> tuple[list[Any], list[Any], list[Any]]:
        return (
            sorted(Prompt.objects.filter(project=target).values_list("external_id", flat=True)),
            sorted(
                Candidate.objects.filter(prompt__project=target).values_list(
                    "prompt__external_id", "external_id", "text", "degradation"
                )
            ),
            sorted(
                Comparison.objects.filter(project=target).values_list(
                    "prompt__external_id",
                    "candidate_a__external_id",
                    "candidate_b__external_id",
                    "is_gold",
                    "gold_answer",
                )
            ),
        )

    with transaction.atomic():
        writer = services._CopyWriter(Batch.objects.create(project=project), False)
        written = writer.write(prompts[:20]) + writer.write(prompts[20:])
    with transaction.atomic():
        bulk = services._BulkWriter(Batch.objects.create(project=twin), False)
        assert bulk.write(prompts) == written
    assert stored(project) == stored(twin)
    assert not any(pid.startswith(("e", "s")) for pid, *_ in stored(project)[2])
