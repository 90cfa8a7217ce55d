"""Importing batches through the service, the REST API and the management command."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from apps.batches.import_format import ImportFormatError
from apps.batches.models import Batch, BatchSource, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.services import batch_import
from tests.conftest import jsonl, prompt_line

URL = "/api/v1/projects/demo/batches/"


def stored_counts() -> tuple[int, int, int, int]:
    return (
        Batch.objects.count(),
        Prompt.objects.count(),
        Candidate.objects.count(),
        Comparison.objects.count(),
    )


def test_it_makes_every_pair_of_candidates_a_comparison(import_rows):
    batch = import_rows(prompt_line("a", n=2), prompt_line("b", n=3), prompt_line("c", n=4))
    assert batch.status == BatchStatus.ACTIVE
    assert (batch.prompt_count, batch.comparison_count) == (3, 1 + 3 + 6)
    pairs = Comparison.objects.filter(prompt__external_id="c").values_list(
        "candidate_a__external_id", "candidate_b__external_id"
    )
    assert sorted(pairs) == [
        ("c1", "c2"),
        ("c1", "c3"),
        ("c1", "c4"),
        ("c2", "c3"),
        ("c2", "c4"),
        ("c3", "c4"),
    ]
    prompt = Prompt.objects.get(external_id="b")
    assert prompt.batch == batch and prompt.project == batch.project


def test_it_rejects_ids_already_in_the_project_and_stores_nothing(import_rows):
    import_rows(prompt_line("a"))
    before = stored_counts()
    with pytest.raises(ImportFormatError) as info:
        import_rows(prompt_line("b"), prompt_line("a"))
    assert [(e.line, e.error[:27]) for e in info.value.errors] == [
        (2, "duplicate prompt id 'a': al")
    ]
    assert stored_counts() == before


def test_it_allows_the_same_prompt_id_in_another_project(import_rows, alice):
    from apps.projects.services import project_create

    other = project_create(slug="other", name="Other")
    import_rows(prompt_line("a"))
    batch = import_rows(prompt_line("a"), target=other)
    assert batch.prompt_count == 1


def test_it_posts_a_jsonl_body(api, bob, project):
    response = api(bob).post(
        URL + "?name=first",
        jsonl(prompt_line("a", n=3), prompt_line("b")),
        content_type="application/jsonl",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active"
    assert (body["prompts"], body["comparisons"]) == (2, 4)
    assert body["name"] == "first"
    assert set(body) >= {"id", "status", "prompts", "comparisons"}
    detail = api(bob).get(f"/api/v1/batches/{body['id']}/")
    assert detail.status_code == 200
    assert {k: detail.json()[k] for k in ("id", "status", "prompts", "comparisons")} == {
        k: body[k] for k in ("id", "status", "prompts", "comparisons")
    }


def test_it_posts_an_ndjson_body(api, bob, project):
    response = api(bob).post(URL, jsonl(prompt_line("a")), content_type="application/x-ndjson")
    assert response.status_code == 201


def test_it_posts_a_multipart_file(api, alice, project):
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(prompt_line("a")))
    response = api(alice).post(URL, {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "prompts.jsonl"


def test_it_returns_every_error_with_its_line_and_stores_nothing(api, bob, project):
    before = stored_counts()
    data = jsonl(prompt_line("a"), "{oops", prompt_line("b", n=1), prompt_line("a"))
    response = api(bob).post(URL, data, content_type="application/jsonl")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["line"] for e in errors] == [2, 3, 4]
    assert all(isinstance(e["error"], str) and e["error"] for e in errors)
    assert stored_counts() == before


@pytest.mark.parametrize(
    "body",
    [b"", b"\n\n", b"\xff\xfe\x00", b"null", b"[]", b'"x"', b"{}" * 3, b"\x00" * 10],
)
def test_it_never_fails_with_a_500_on_garbage(api, bob, project, body):
    response = api(bob).post(URL, body, content_type="application/jsonl")
    assert response.status_code == 400
    assert response.json()["errors"]
    assert stored_counts() == (0, 0, 0, 0)


def test_it_explains_a_missing_file_field(api, bob, project):
    response = api(bob).post(URL, {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["detail"]


def test_it_refuses_an_unknown_content_type(api, bob, project):
    response = api(bob).post(URL, b"hello", content_type="text/csv")
    assert response.status_code == 415


def test_it_refuses_a_file_over_the_limit(api, bob, project, settings):
    settings.IMPORT_MAX_BYTES = 100
    response = api(bob).post(URL, jsonl(prompt_line("a", n=5)), content_type="application/jsonl")
    assert response.status_code == 413
    assert stored_counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("who", ["ann", "charlie", None])
def test_it_lets_only_staff_and_leads_import(api, project, annotators, charlie, who):
    user = {"ann": annotators[0], "charlie": charlie, None: None}[who]
    response = api(user).post(URL, jsonl(prompt_line("a")), content_type="application/jsonl")
    assert response.status_code in (401, 403, 404)
    assert stored_counts() == (0, 0, 0, 0)


def test_it_hides_a_project_of_another_lead(api, bob, alice, project):
    from apps.projects.services import project_create

    project_create(slug="secret", name="Secret")
    response = api(bob).post(
        "/api/v1/projects/secret/batches/", jsonl(prompt_line()), content_type="application/jsonl"
    )
    assert response.status_code == 404


def test_it_hides_batches_of_other_projects(api, import_rows, charlie):
    batch = import_rows(prompt_line())
    assert api(charlie).get(f"/api/v1/batches/{batch.pk}/").status_code == 404


def test_it_imports_large_files_through_the_task(
    api, bob, project, settings, django_capture_on_commit_callbacks
):
    # Eager here (no broker in unit tests); tests/judging/test_worker.py runs the real worker.
    settings.IMPORT_BACKGROUND_BYTES = 10
    data = jsonl(*(prompt_line(f"p{i}") for i in range(20)))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(bob).post(URL, data, content_type="application/jsonl")
    assert response.status_code in (201, 202)
    batch = Batch.objects.get(pk=response.json()["id"])
    assert (batch.status, batch.prompt_count, batch.comparison_count) == ("active", 20, 20)
    assert not BatchSource.objects.filter(batch=batch).exists()


def test_a_bad_large_file_fails_with_its_errors_in_the_task(
    api, bob, project, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_BYTES = 10
    with django_capture_on_commit_callbacks(execute=True):
        response = api(bob).post(
            URL, jsonl(prompt_line("a"), "{bad"), content_type="application/jsonl"
        )
        assert response.status_code == 202
        assert response.json()["status"] == "importing"
    detail = api(bob).get(f"/api/v1/batches/{response.json()['id']}/").json()
    assert detail["status"] == "failed"
    assert detail["errors"][0]["line"] == 2
    assert Prompt.objects.count() == 0
    assert not BatchSource.objects.exists()


def test_the_command_imports_a_file(project, tmp_path, capsys):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(jsonl(prompt_line("a", n=4)))
    call_command("import_batch", "demo", str(path))
    assert "6 comparisons" in capsys.readouterr().out
    assert Comparison.objects.count() == 6


def test_the_command_lists_errors_and_stores_nothing(project, tmp_path, capsys):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(jsonl(prompt_line("a"), "[]"))
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_batch", "demo", str(path))
    assert "line 2: each line must be a JSON object" in capsys.readouterr().err
    assert stored_counts() == (0, 0, 0, 0)


def test_the_command_explains_a_missing_project_or_file(project, tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("import_batch", "nope", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_batch", "demo", str(tmp_path / "x.jsonl"))


def test_the_service_refuses_a_file_over_the_limit(project, settings):
    settings.IMPORT_MAX_BYTES = 5
    with pytest.raises(ImportFormatError, match="error"):
        batch_import(project=project, source=io.BytesIO(b"123456"), size=6)


def test_a_server_error_in_the_task_fails_the_batch_instead_of_leaving_it(project, monkeypatch):
    from apps.batches import tasks

    data = jsonl(prompt_line("a"))
    batch = Batch.objects.create(project=project, status=BatchStatus.IMPORTING)
    BatchSource.objects.create(batch=batch, data=data)

    def broken(*, batch_id: int) -> Batch:
        raise RuntimeError("database went away")

    monkeypatch.setattr(tasks, "batch_import_stored", broken)
    with pytest.raises(RuntimeError):
        tasks.batch_import_task(batch.pk)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED
    assert batch.errors == [{"line": None, "error": "the import failed on the server; try again"}]
    assert not BatchSource.objects.filter(batch=batch).exists()


def test_it_refuses_a_text_over_the_size_limit_with_its_line(api, bob, project, settings):
    # Every text is rendered at import and shown on every judging page: one cannot be 1 MB.
    settings.IMPORT_MAX_TEXT_CHARS = 1000
    long_answer = prompt_line("b")
    long_answer["candidates"][1]["text"] = "[" * 1001
    long_prompt = prompt_line("c", prompt="x" * 1001)
    long_message = prompt_line("d", prompt=[{"role": "user", "content": "y" * 1001}])
    fits = prompt_line("e")
    fits["candidates"][0]["text"] = "z" * 1000
    data = jsonl(prompt_line("a"), long_answer, long_prompt, long_message, fits)
    response = api(bob).post(URL, data, content_type="application/jsonl")
    assert response.status_code == 400
    assert [(e["line"], e["error"]) for e in response.json()["errors"]] == [
        (
            2,
            "candidate 2 'text' is 1001 characters long; the limit is 1000 (IMPORT_MAX_TEXT_CHARS)",
        ),
        (3, "'prompt' is 1001 characters long; the limit is 1000 (IMPORT_MAX_TEXT_CHARS)"),
        (
            4,
            "prompt message 1 'content' is 1001 characters long; the limit is 1000 "
            "(IMPORT_MAX_TEXT_CHARS)",
        ),
    ]
    assert stored_counts() == (0, 0, 0, 0)


def test_the_text_limit_holds_in_the_background_import_too(
    api, bob, project, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_BYTES = 10
    settings.IMPORT_MAX_TEXT_CHARS = 50
    row = prompt_line("b")
    row["candidates"][0]["text"] = "w" * 51
    with django_capture_on_commit_callbacks(execute=True):
        response = api(bob).post(
            URL, jsonl(prompt_line("a"), row), content_type="application/jsonl"
        )
    detail = api(bob).get(f"/api/v1/batches/{response.json()['id']}/").json()
    assert detail["status"] == "failed"
    assert [e["line"] for e in detail["errors"]] == [2]
    assert "IMPORT_MAX_TEXT_CHARS" in detail["errors"][0]["error"]


def test_the_default_text_limit_is_200_000_characters(settings):
    assert settings.IMPORT_MAX_TEXT_CHARS == 200_000
