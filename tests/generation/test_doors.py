"""The doors to generation jobs, the admin and the REST API: each starts, shows, cancels and
resumes through apps.generation.services, so each refuses what the service refuses; a lead of
another project, an annotator and an anonymous client get nothing."""

import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from apps.batches.models import Candidate, Comparison
from apps.generation.models import GenerationJob, JobStatus
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.conftest import api_client_for, events
from tests.endpoints.fake_llm import FakeLLM, Fault

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/generation/generationjob/add/"


def admin_form(batch: Any, endpoints: list[Any], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "batch": batch.pk,
        "endpoints": [e.pk for e in endpoints],
        "samples": 2,
        "pairing": "all",
        "system_prompt": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_lead_starts_a_job_in_the_admin_and_watches_it(
    lead: Client, prompts_batch: Any, endpoint: Any, django_capture_on_commit_callbacks: Any
) -> None:
    batch = prompts_batch("one", "two")
    x = endpoint(input_price="2", output_price="4")
    with django_capture_on_commit_callbacks(execute=True):
        response = lead.post(ADD_URL, admin_form(batch, [x]))
    assert response.status_code == 302, response.content.decode()[:3000]
    job = GenerationJob.objects.get()
    assert response["Location"] == f"/admin/generation/generationjob/{job.pk}/change/"
    assert job.status == JobStatus.DONE
    assert Candidate.objects.filter(prompt__batch=batch).count() == 4
    page = lead.get(response["Location"]).content.decode()
    assert "4 of 4 responses" in page and "2 of 2 prompts settled" in page
    assert "Resume job" in page and "Cancel job" not in page
    assert str(job.cost) in page
    listing = lead.get("/admin/generation/generationjob/").content.decode()
    assert "4 of 4 (100%)" in listing
    [started] = events("generation_started")
    assert started.details["endpoints"] == ["x"] and started.details["samples"] == 2


def test_the_admin_form_shows_the_service_s_problems_by_field(
    lead: Client, prompts_batch: Any, endpoint: Any
) -> None:
    batch = prompts_batch("one")
    x = endpoint()
    page = lead.post(ADD_URL, admin_form(batch, [x], pairing="models")).content.decode()
    assert "at least two endpoints" in page
    page = lead.post(ADD_URL, admin_form(batch, [x], samples=17)).content.decode()
    assert "Ask for 1 to 16 responses per endpoint" in page
    page = lead.post(ADD_URL, admin_form(batch, [x], pairing="random")).content.decode()
    assert "how many random pairs" in page
    assert not GenerationJob.objects.exists()


def test_a_lead_sees_only_their_batches_and_endpoints(
    lead: Client, alice: User, bob: User, prompts_batch: Any, endpoint: Any, llm: FakeLLM
) -> None:
    elsewhere = project_create(slug="elsewhere", name="Elsewhere", created_by=alice)
    theirs = prompts_batch("theirs", target=elsewhere)
    membership_add(project=elsewhere, user=bob, role="lead")
    their_endpoint = endpoint("theirs", project=elsewhere)
    elsewhere.memberships.filter(user=bob).delete()
    mine = prompts_batch("mine")
    x = endpoint()
    page = lead.get(ADD_URL).content.decode()
    assert f'<option value="{mine.pk}">' in page
    assert f'<option value="{theirs.pk}">' not in page
    assert f'<option value="{x.pk}">' in page
    assert f'<option value="{their_endpoint.pk}">' not in page
    response = lead.post(ADD_URL, admin_form(theirs, [x]))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    response = lead.post(ADD_URL, admin_form(mine, [their_endpoint]))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_cancel_and_resume_from_the_job_s_page(
    lead: Client,
    bob: User,
    prompts_batch: Any,
    endpoint: Any,
    no_worker: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = prompts_batch("one")
    with django_capture_on_commit_callbacks(execute=True):
        response = lead.post(ADD_URL, admin_form(batch, [endpoint()]))
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert job.status == JobStatus.QUEUED
    assert no_worker == [("apps.generation.tasks.generation_run_task", [job.pk])]
    page = lead.get(response["Location"]).content.decode()
    assert "Cancel job" in page
    assert lead.get(f"/admin/generation/generationjob/{job.pk}/cancel/").status_code == 405
    posted = lead.post(f"/admin/generation/generationjob/{job.pk}/cancel/", follow=True)
    assert "cancelled" in posted.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    posted = lead.post(f"/admin/generation/generationjob/{job.pk}/cancel/", follow=True)
    assert "nothing to cancel" in posted.content.decode()
    lead.post(f"/admin/generation/generationjob/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert [e.actor for e in events("generation_resumed")] == [bob]


def test_an_annotator_has_no_admin_for_jobs(client: Client, annotators: list[User]) -> None:
    client.force_login(annotators[0])
    response = client.get("/admin/generation/generationjob/")
    assert response.status_code == 302 and "/login" in response["Location"]


# --- The API ---------------------------------------------------------------------------------


def test_the_api_starts_a_job_by_endpoint_names_and_reports_it(
    bob: User,
    prompts_batch: Any,
    endpoint: Any,
    llm: FakeLLM,
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = prompts_batch("one", "this is refused", "three")
    endpoint("x", "model-x", input_price="1", output_price="1")
    endpoint("y", "model-y")
    llm.fail_when("refused", Fault(status=400, body=b'{"error": {"message": "too long"}}'))
    api = api_client_for(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/v1/batches/{batch.pk}/generations/",
            {"endpoints": ["x", "y"], "samples": 1, "pairing": "models", "seed": 3},
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["endpoints"] == ["x", "y"]
    detail = api.get(f"/api/v1/generations/{body['id']}/").json()
    assert detail["status"] == "done"
    assert (detail["requests_total"], detail["requests_done"], detail["requests_failed"]) == (
        6,
        4,
        2,
    )
    assert detail["comparisons_made"] == 2
    assert [row["prompt"] for row in detail["failures"]] == ["p-1"]
    assert {f["endpoint"] for f in detail["failures"][0]["failures"]} == {"x", "y"}
    assert "too long" in detail["failures"][0]["failures"][0]["detail"]
    listing = api.get(f"/api/v1/batches/{batch.pk}/generations/").json()
    assert [job["id"] for job in listing["jobs"]] == [body["id"]]
    assert listing["usage"]["candidates"] == 4 and listing["usage"]["unpriced"] == 2
    assert listing["usage"]["cost"] == detail["cost"]
    assert Comparison.objects.filter(batch=batch).count() == 2


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "endpoints", "required"),
        ({"endpoints": [], "samples": 1}, "endpoints", "at least 1"),
        ({"endpoints": ["nope"], "samples": 1}, "endpoints", "No endpoint of this project"),
        ({"endpoints": ["x"], "samples": 0}, "samples", "greater than or equal to 1"),
        ({"endpoints": ["x"], "samples": "two"}, "samples", "valid integer"),
        ({"endpoints": ["x"], "samples": 1, "pairing": "best"}, "pairing", "not a valid choice"),
        ({"endpoints": ["x"], "samples": 1, "pairing": "models"}, "pairing", "two endpoints"),
        ({"endpoints": ["x"], "samples": 1, "temperature": 3}, "temperature", "less than"),
        ({"endpoints": ["x"], "samples": 20}, "samples", "less than or equal to 16"),
        ({"endpoints": "x", "samples": 1}, "endpoints", "list"),
    ],
)
def test_the_api_refuses_bad_settings_naming_the_field(
    bob: User, prompts_batch: Any, endpoint: Any, body: dict[str, Any], field: str, message: str
) -> None:
    batch = prompts_batch("one")
    endpoint()
    response = api_client_for(bob).post(
        f"/api/v1/batches/{batch.pk}/generations/", body, format="json"
    )
    assert response.status_code == 400, response.content
    assert message in str(response.json()), response.json()
    assert field in str(response.json())
    assert not GenerationJob.objects.exists()


def test_the_api_answers_409_for_a_second_job_and_for_a_bad_cancel(
    bob: User, prompts_batch: Any, endpoint: Any, no_worker: Any
) -> None:
    batch = prompts_batch("one")
    endpoint()
    api = api_client_for(bob)
    url = f"/api/v1/batches/{batch.pk}/generations/"
    first = api.post(url, {"endpoints": ["x"], "samples": 1}, format="json").json()
    again = api.post(url, {"endpoints": ["x"], "samples": 2}, format="json")
    assert again.status_code == 409 and "cancel it" in str(again.json())
    assert api.post(f"/api/v1/generations/{first['id']}/resume/").status_code == 409
    cancelled = api.post(f"/api/v1/generations/{first['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/generations/{first['id']}/cancel/").status_code == 409
    resumed = api.post(f"/api/v1/generations/{first['id']}/resume/")
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued"


def test_the_api_gives_others_nothing(
    bob: User,
    charlie: User,
    annotators: list[User],
    prompts_batch: Any,
    endpoint: Any,
    no_worker: Any,
    project: Project,
) -> None:
    batch = prompts_batch("one")
    endpoint()
    job = api_client_for(bob).post(
        f"/api/v1/batches/{batch.pk}/generations/",
        {"endpoints": ["x"], "samples": 1},
        format="json",
    )
    job_id = job.json()["id"]
    for user in (charlie, annotators[0]):
        api = api_client_for(user)
        assert api.get(f"/api/v1/batches/{batch.pk}/generations/").status_code == 404
        assert api.get(f"/api/v1/generations/{job_id}/").status_code == 404
        assert api.post(f"/api/v1/generations/{job_id}/cancel/").status_code == 404
        created = api.post(
            f"/api/v1/batches/{batch.pk}/generations/",
            {"endpoints": ["x"], "samples": 1},
            format="json",
        )
        assert created.status_code == 404
    assert api_client_for(None).get(f"/api/v1/generations/{job_id}/").status_code in (401, 403)
    assert GenerationJob.objects.get().status == JobStatus.QUEUED


def test_the_batch_page_says_what_generation_made_and_links_to_its_jobs(
    lead: Client, prompts_batch: Any, endpoint: Any, django_capture_on_commit_callbacks: Any
) -> None:
    batch = prompts_batch("one")
    page = lead.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert "none yet" in page
    assert f"/admin/generation/generationjob/add/?batch={batch.pk}" in page
    # The link fills the batch in.
    assert (
        f'<option value="{batch.pk}" selected>'
        in lead.get(ADD_URL + f"?batch={batch.pk}").content.decode()
    )
    with django_capture_on_commit_callbacks(execute=True):
        lead.post(ADD_URL, admin_form(batch, [endpoint(input_price="1", output_price="1")]))
    page = lead.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert "2 candidates" in page and "1 job(s)</a>, the latest done" in page
    listing = f"/admin/generation/generationjob/?batch__id__exact={batch.pk}"
    assert listing.replace("?", "?") in page.replace("&amp;", "&")
    assert lead.get(listing).status_code == 200


# --- The command -------------------------------------------------------------------------------


def test_the_command_starts_a_job_as_a_lead(
    bob: User, prompts_batch: Any, endpoint: Any, django_capture_on_commit_callbacks: Any
) -> None:
    batch = prompts_batch("one", "two")
    endpoint()
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "generate",
            str(batch.pk),
            "--endpoint",
            "x",
            "--samples",
            "2",
            "--as",
            "bob",
            stdout=out,
        )
    job = GenerationJob.objects.get()
    assert job.created_by == bob
    assert f"Generation job {job.pk}: 4 requests, queued." in out.getvalue()
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.requests_done == 4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--endpoint", "x", "--as", "nobody"], "No user named 'nobody'"),
        (
            ["--endpoint", "nope", "--as", "bob"],
            "No endpoint of this project is named nope",
        ),
        (["--endpoint", "x", "--as", "charlie"], "Only staff and the project's leads"),
        (["--endpoint", "x", "--as", "bob", "--samples", "40"], "samples: Ask for 1 to 16"),
        (["--endpoint", "x", "--as", "bob", "--pairing", "models"], "pairing: One pair per pair"),
    ],
)
def test_the_command_refuses_what_the_service_refuses(
    bob: User, charlie: User, prompts_batch: Any, endpoint: Any, arguments: list[str], message: str
) -> None:
    batch = prompts_batch("one")
    endpoint()
    with pytest.raises(CommandError, match=message):
        call_command("generate", str(batch.pk), *arguments)
    assert not GenerationJob.objects.exists()


def test_prompts_imported_without_candidates_get_generated_ones_and_comparisons(
    bob: User,
    project: Project,
    endpoint: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    api = api_client_for(bob)
    rows = [{"id": "q1", "prompt": "Name a colour."}, {"id": "q2", "prompt": "Name a fruit."}]
    body = "\n".join(json.dumps(row) for row in rows) + "\n"
    imported = api.post(
        f"/api/v1/projects/{project.slug}/batches/?candidates=optional",
        data=body,
        content_type="application/jsonl",
    )
    assert imported.status_code == 201, imported.content
    batch_id = imported.json()["id"]
    assert imported.json()["comparisons"] == 0
    assert imported.json()["awaiting_candidates"] == 2
    endpoint("x", "model-x")
    endpoint("y", "model-y")
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(
            f"/api/v1/batches/{batch_id}/generations/",
            {"endpoints": ["x", "y"], "samples": 2, "pairing": "random", "pairs_per_prompt": 3},
            format="json",
        )
    assert started.status_code == 202, started.content
    after = api.get(f"/api/v1/batches/{batch_id}/").json()
    assert after["awaiting_candidates"] == 0
    assert after["comparisons"] == 6
    comparisons = api.get(f"/api/v1/projects/{project.slug}/comparisons/?batch={batch_id}").json()
    assert len(comparisons["results"]) == 6
    assert all(row["candidate_a_id"].startswith("g-") for row in comparisons["results"])
