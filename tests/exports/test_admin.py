"""Exports from the admin: only the formats that apply to the project's scheme (every door asks
`formats_for`), and background exports started, watched and downloaded from the admin through
the API's service. Celery is eager here: a job runs during the POST that starts it."""

from pathlib import Path

import pytest

from apps.audit.models import AuditAction, AuditEvent
from apps.exports.formats import FORMATS, formats_for
from apps.exports.jobs import export_job_request
from apps.exports.models import ExportJob, ExportStatus
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.services import membership_add, project_create
from tests.conftest import prompt_line

ADD = "/admin/exports/exportjob/add/"
LIST = "/admin/exports/exportjob/"


@pytest.fixture(autouse=True)
def export_root(settings, tmp_path) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


@pytest.fixture
def lead(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def voted(project, annotators, import_rows):
    """Two prompts of three candidates, judged by all three annotators (always the left)."""
    batch = import_rows(prompt_line("p-1", n=3), prompt_line("p-2", n=3))
    for user in annotators:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    return batch


@pytest.fixture
def other(make_user, import_rows):
    """Project B, led by dora (not bob), listwise, with a batch and a finished export."""
    project = project_create(slug="other", name="Other project")
    project.scheme = "listwise"
    project.save()
    dora = make_user("dora")
    membership_add(project=project, user=dora, role="lead")
    import_rows(prompt_line("o-1", n=3), target=project)
    job = export_job_request(project=project, user=dora, data={"format": "listwise"})
    assert job.status == ExportStatus.DONE
    return project


def format_offers(html: str) -> set[str]:
    """The formats a page offers: export links (?format=x) and <option value="x">."""
    import re

    offered = set(re.findall(r"format=([a-z-]+)", html))
    offered |= set(re.findall(r'<option value="([a-z-]+)"', html))
    return offered & set(FORMATS)


# -- which formats apply (item: one function decides, every door asks it) ----------------------


def test_one_function_says_which_formats_apply_to_each_scheme():
    pairwise = ["trl", "trl-implicit", "kto", "hh-rlhf", "openai", "arena", "judgments"]
    assert formats_for("pairwise") == pairwise
    assert formats_for("graded") == pairwise
    assert formats_for("listwise") == [
        "trl",
        "trl-implicit",
        "kto",
        "hh-rlhf",
        "openai",
        "listwise",
        "judgments",
    ]


def test_a_pairwise_projects_admin_pages_do_not_offer_listwise(lead, project, voted):
    batch_page = lead.get(f"/admin/batches/batch/{voted.pk}/change/").content.decode()
    assert format_offers(batch_page) == set(formats_for("pairwise"))
    assert "format=listwise" not in batch_page and "format=arena" in batch_page
    form = lead.get(ADD, {"project": "demo"}).content.decode()
    assert format_offers(form) == set(formats_for("pairwise"))
    assert '<option value="listwise"' not in form


def test_the_project_page_links_to_its_export_form(lead, project):
    html = lead.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert f'href="{ADD}?project=demo" data-testid="export-link"' in html


def test_a_listwise_projects_admin_pages_do_not_offer_arena(lead, project, voted):
    project.scheme = "listwise"
    project.save()
    batch_page = lead.get(f"/admin/batches/batch/{voted.pk}/change/").content.decode()
    assert format_offers(batch_page) == set(formats_for("listwise"))
    assert "format=arena" not in batch_page and "format=listwise" in batch_page
    form = lead.get(ADD, {"project": "demo"}).content.decode()
    assert '<option value="arena"' not in form and '<option value="listwise"' in form
    # Posted anyway (a stale form): refused by the form, and no job.
    response = lead.post(ADD, {"project": "demo", "format": "arena", "file_format": "jsonl"})
    assert response.status_code == 200
    assert "Select a valid choice. arena is not one of the available choices." in (
        response.content.decode()
    )
    assert not ExportJob.objects.exists()


def test_the_api_refuses_a_format_that_does_not_apply(api, bob, project):
    response = api(bob).post(
        "/api/v1/projects/demo/exports/", {"format": "listwise"}, format="json"
    )
    assert response.status_code == 400
    assert "listwise has one row per ranked prompt" in response.json()["format"][0]


# -- starting, watching and downloading a background export from the admin ---------------------


def test_the_list_offers_to_start_one(lead, project):
    html = lead.get(LIST).content.decode()
    assert f'href="{ADD}"' in html and "Start a background export" in html


def test_a_lead_of_one_project_goes_straight_to_its_form(lead, project):
    html = lead.get(ADD).content.decode()
    assert 'name="format"' in html and 'value="demo"' in html


def test_staff_choose_the_project_first(client, alice, project, other):
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    html = client.get(ADD).content.decode()
    assert 'id="export-project-form"' in html
    assert '<option value="demo"' in html and '<option value="other"' in html
    html = client.get(ADD, {"project": "other"}).content.decode()
    assert '<option value="listwise"' in html and '<option value="arena"' not in html


def test_a_lead_starts_watches_and_downloads_an_export(lead, bob, project, voted):
    response = lead.post(
        ADD,
        {
            "project": "demo",
            "format": "trl",
            "file_format": "jsonl",
            "aggregate": "majority",
            "prompt_form": "text",
            "batch": str(voted.pk),
        },
    )
    job = ExportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/exports/exportjob/{job.pk}/change/"
    assert job.requested_by == bob and job.project == project
    assert job.format == "trl" and job.status == ExportStatus.DONE
    assert job.parameters == {
        "aggregate": "majority",
        "prompt_form": "text",
        "batch": str(voted.pk),
    }
    # The same audit event as the API's POST.
    event = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert event.actor == bob and event.target_id == str(job.pk)
    assert event.details == {"format": "trl", "file_format": "jsonl", **job.parameters}
    page = lead.get(response["Location"]).content.decode()
    assert 'data-testid="export-status">done<' in page
    download = f"/api/v1/projects/demo/exports/{job.pk}/download/"
    assert f'href="{download}"' in page
    assert 'http-equiv="refresh"' not in page  # done: nothing to watch
    listing = lead.get(LIST).content.decode()
    assert f'href="{download}"' in listing
    # The link downloads the file with the admin's session (a browser's Accept header).
    file = lead.get(download, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert file.status_code == 200
    body = b"".join(file.streaming_content).decode()
    lines = [line for line in body.splitlines() if line]
    assert lines and all('"prompt": "' in line for line in lines)  # prompt_form=text


def test_a_running_export_page_reloads_itself(lead, bob, project, voted, no_worker):
    lead.post(ADD, {"project": "demo", "format": "judgments", "file_format": "parquet"})
    job = ExportJob.objects.get()
    assert job.status == ExportStatus.QUEUED
    page = lead.get(f"/admin/exports/exportjob/{job.pk}/change/").content.decode()
    assert 'data-testid="export-status">queued<' in page
    assert '<meta http-equiv="refresh" content="3">' in page
    assert 'id="export-refresh"' in page
    assert 'id="exports-running"' in lead.get(LIST).content.decode()


def test_an_option_the_format_does_not_take_is_named(lead, project, voted):
    response = lead.post(
        ADD,
        {"project": "demo", "format": "arena", "file_format": "jsonl", "aggregate": "unanimous"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not a parameter of format=arena" in html
    assert not ExportJob.objects.exists()


def test_a_lead_of_project_a_cannot_start_or_download_one_of_project_b(lead, project, other):
    assert lead.get(ADD, {"project": "other"}).status_code == 404
    response = lead.post(ADD, {"project": "other", "format": "listwise", "file_format": "jsonl"})
    assert response.status_code == 404
    assert not ExportJob.objects.filter(project=project).exists()
    assert ExportJob.objects.filter(project=other).count() == 1
    # Project B is not among the choices, and its job is neither listed nor shown nor served.
    job = ExportJob.objects.get(project=other)
    assert "other" not in lead.get(LIST).content.decode()
    assert lead.get(f"/admin/exports/exportjob/{job.pk}/change/").status_code == 302
    assert lead.get(f"/api/v1/projects/other/exports/{job.pk}/download/").status_code == 404
    assert lead.get(f"/api/v1/projects/demo/exports/{job.pk}/download/").status_code == 404


def test_an_annotator_cannot_start_one(client, annotators, project):
    client.force_login(annotators[0])
    response = client.get(ADD, {"project": "demo"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
