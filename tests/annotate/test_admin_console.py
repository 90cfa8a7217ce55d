"""Running a campaign from the admin: project settings, guideline preview, batch actions and
import progress, the audit log (annotator accounts: tests/accounts/test_admin.py)."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.batches.import_format import parse_jsonl
from apps.batches.models import Batch, BatchStatus, Comparison
from apps.batches.services import STORE_PROGRESS_KEY, batch_import
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import assignment_next
from apps.projects.models import GuidelineVersion, Project
from tests.conftest import events, jsonl, prompt_line
from tests.projects.test_admin import _project_form

PROJECT_URL = "/admin/projects/project/{}/change/"


# Projects: settings, validation, guidelines and their preview.


def test_the_preview_renders_markdown_through_the_workbench_renderer(lead):
    response = lead.post(
        "/admin/projects/project/preview/",
        {"guidelines": "Be **fair**.\n\n<script>alert(1)</script> [x](javascript:alert(1))"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>fair</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert lead.get("/admin/projects/project/preview/").status_code == 405


def test_the_preview_is_for_the_admin_only(client, annotators, project):
    client.force_login(annotators[0])
    response = client.post("/admin/projects/project/preview/", {"guidelines": "**x**"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_project_page_wires_the_live_preview(lead, project):
    html = lead.get(PROJECT_URL.format(project.pk)).content.decode()
    assert 'hx-post="/admin/projects/project/preview/"' in html
    assert 'id="guidelines-preview"' in html and "js/htmx.min.js" in html


def test_lists_are_edited_one_per_line(lead, project):
    project.memberships.filter(role="annotator").delete()
    data = _project_form(
        project,
        scheme="graded",
        criteria="helpfulness: does what was asked\r\nharmlessness\n\n",
        flags="unsafe content\nfactual error",
        skip_reasons="Too long\nNot my language",
    )
    response = lead.post(PROJECT_URL.format(project.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    project.refresh_from_db()
    assert project.criteria == [
        {"name": "helpfulness", "description": "does what was asked"},
        {"name": "harmlessness"},
    ]
    assert project.flags == ["unsafe content", "factual error"]
    assert project.skip_reasons == ["Too long", "Not my language"]
    html = lead.get(PROJECT_URL.format(project.pk)).content.decode()
    assert "helpfulness: does what was asked\nharmlessness</textarea>" in html


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"rationale": "off", "rationale_min_length": "20"}, "rationale_min_length", "leave it"),
        ({"gold_min_accuracy": "0.8", "gold_rate": "0"}, "gold_min_accuracy", "gold rate"),
        ({"gold_rate": "1.5"}, "gold_rate", "less than or equal to 1"),
        ({"overlap": "0"}, "overlap", "greater than or equal to 1"),
        ({"lease_seconds": "5"}, "lease_seconds", "greater than or equal to 10"),
        ({"flags": "ok\nnot<ok>"}, "flags", "is not a name"),
        ({"flags": "same\nsame"}, "flags", "Each name once"),
        ({"flags": "\n".join(f"f{i}" for i in range(21))}, "flags", "At most 20"),
        ({"scheme": "listwise", "criteria": "helpfulness"}, "criteria", "listwise project"),
    ],
)
def test_bad_settings_are_refused_with_a_message(lead, project, changes, field, message):
    project.memberships.filter(role="annotator").delete()
    response = lead.post(PROJECT_URL.format(project.pk), _project_form(project, **changes))
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert f'id="id_{field}"' in html or f'name="{field}"' in html
    assert not events("project_settings")


def test_the_scheme_is_fixed_once_there_are_batches(lead, project, batch):
    project.memberships.filter(role="annotator").delete()
    response = lead.post(PROJECT_URL.format(project.pk), _project_form(project, scheme="graded"))
    assert response.status_code == 200
    assert "the scheme is fixed now" in response.content.decode()
    project.refresh_from_db()
    assert project.scheme == "pairwise"


def test_setting_changes_and_guideline_versions_are_audited(lead, bob, project):
    project.memberships.filter(role="annotator").delete()
    url = PROJECT_URL.format(project.pk)
    assert lead.post(url, _project_form(project, overlap="5", guidelines="v2")).status_code == 302
    assert lead.post(url, _project_form(project, overlap="5", guidelines="v2")).status_code == 302
    assert lead.post(url, _project_form(project, overlap="5", guidelines="v3")).status_code == 302
    versions = GuidelineVersion.objects.filter(project=project).order_by("version")
    assert [(v.version, v.text) for v in versions] == [(1, ""), (2, "v2"), (3, "v3")]
    [settings_change] = events("project_settings")
    assert settings_change.actor == bob and settings_change.project == project
    assert settings_change.details["overlap"] == {"old": 3, "new": 5}
    assert settings_change.details["skip_reasons"]["new"] == ["Unclear"]
    assert "guidelines" not in settings_change.details
    assert [e.details["version"] for e in events("guidelines_changed")] == [2, 3]


def test_membership_changes_are_audited(lead, bob, project, make_user):
    project.memberships.filter(role="annotator").delete()
    make_user("newbie")
    mine = project.memberships.get(user=bob)
    data = _project_form(
        project,
        **{
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(mine.pk),
            "memberships-0-project": str(project.pk),
            "memberships-0-username": "bob",
            "memberships-0-role": "lead",
            "memberships-1-project": str(project.pk),
            "memberships-1-username": "newbie",
            "memberships-1-role": "annotator",
        },
    )
    assert lead.post(PROJECT_URL.format(project.pk), data).status_code == 302
    [added] = events("membership_added", actor=bob)
    assert added.details == {"user": "newbie", "role": "annotator"}
    newbie = project.memberships.get(user__username="newbie")
    data.update(
        {
            "memberships-INITIAL_FORMS": "2",
            "memberships-1-id": str(newbie.pk),
            "memberships-1-role": "lead",
        }
    )
    assert lead.post(PROJECT_URL.format(project.pk), data).status_code == 302
    [changed] = events("membership_changed", actor=bob)
    assert changed.details["role"] == {"old": "annotator", "new": "lead"}
    data["memberships-1-DELETE"] = "on"
    assert lead.post(PROJECT_URL.format(project.pk), data).status_code == 302
    [removed] = events("membership_removed", actor=bob)
    assert removed.details == {"user": "newbie", "role": "lead"}
    assert not project.memberships.filter(user__username="newbie").exists()


def test_creating_a_project_is_audited(client, alice):
    client.force_login(alice)
    data = _project_form(Project(name="New"), slug="new", guidelines="Hello")
    response = client.post("/admin/projects/project/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    project = Project.objects.get(slug="new")
    [created] = events("project_created")
    assert (created.actor, created.project, created.details["overlap"]) == (alice, project, 3)
    # Staff create without becoming a member.
    assert not project.memberships.exists()


# Batches: actions, buttons, export links, progress.


def batch_url(batch: Batch, tail: str = "change/") -> str:
    return f"/admin/batches/batch/{batch.pk}/{tail}"


def test_the_batch_page_offers_the_actions_that_apply_and_the_exports(lead, batch):
    html = lead.get(batch_url(batch)).content.decode()
    assert f'action="/admin/batches/batch/{batch.pk}/act/pause/"' in html
    assert f'action="/admin/batches/batch/{batch.pk}/act/close/"' in html
    assert "/act/resume/" not in html and "/act/activate/" not in html
    assert "/act/priority/" in html and "/act/reclaim/" in html
    for name in ["trl", "kto", "hh-rlhf", "openai", "arena", "judgments", "card"]:
        assert f"/api/v1/projects/demo/export/?format={name}&amp;batch={batch.pk}" in html


def test_the_export_links_work_with_the_admin_session_and_are_audited(lead, bob, batch):
    response = lead.get(f"/api/v1/projects/demo/export/?format=card&batch={batch.pk}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    response = lead.get(f"/api/v1/projects/demo/export/?format=trl&batch={batch.pk}")
    assert response.status_code == 200
    exports = events("export")
    assert [e.details for e in exports] == [
        {"format": "card", "batch": str(batch.pk)},
        {"format": "trl", "batch": str(batch.pk)},
    ]
    assert all(e.actor == bob and e.project == batch.project for e in exports)


def test_pause_resume_close_and_activate_from_the_buttons(lead, bob, batch):
    for action, status in [
        ("pause", "paused"),
        ("resume", "active"),
        ("close", "done"),
        ("activate", "active"),
    ]:
        response = lead.post(batch_url(batch, f"act/{action}/"))
        assert response.status_code == 302 and response["Location"] == batch_url(batch)
        batch.refresh_from_db()
        assert batch.status == status, action
    history = [
        (e.details["action"], e.details["status"]["old"], e.details["status"]["new"])
        for e in events("batch_status")
    ]
    assert history == [
        ("pause", "active", "paused"),
        ("resume", "paused", "active"),
        ("close", "active", "done"),
        ("activate", "done", "active"),
    ]
    assert all(e.actor == bob and e.target_id == str(batch.pk) for e in events("batch_status"))


def test_an_action_that_does_not_apply_changes_nothing(lead, batch):
    response = lead.post(batch_url(batch, "act/resume/"), follow=True)
    assert "it cannot resume" in response.content.decode()
    batch.refresh_from_db()
    assert batch.status == "active" and not events("batch_status")
    assert lead.get(batch_url(batch, "act/pause/")).status_code == 405
    lead.post(batch_url(batch, "act/explode/"))
    batch.refresh_from_db()
    assert batch.status == "active"


def test_the_priority_is_set_from_the_page_and_audited(lead, batch):
    lead.post(batch_url(batch, "act/priority/"), {"priority": "7"})
    batch.refresh_from_db()
    assert batch.priority == 7
    response = lead.post(batch_url(batch, "act/priority/"), {"priority": "high"}, follow=True)
    assert "The priority must be a whole number" in response.content.decode()
    batch.refresh_from_db()
    assert batch.priority == 7
    [event] = events("batch_priority")
    assert event.details == {"priority": {"old": 0, "new": 7}}


def test_the_changelist_actions_pause_and_set_the_priority(lead, batch, import_rows):
    second = import_rows(prompt_line("q-1"))
    url = "/admin/batches/batch/"
    ids = [str(batch.pk), str(second.pk)]
    response = lead.post(url, {"action": "pause_batches", "_selected_action": ids})
    assert response.status_code == 302
    assert set(Batch.objects.values_list("status", flat=True)) == {"paused"}
    response = lead.post(
        url, {"action": "set_priority", "_selected_action": ids, "priority": "3"}, follow=True
    )
    assert "Priority 3 set on 2 batch(es)" in response.content.decode()
    assert set(Batch.objects.values_list("priority", flat=True)) == {3}
    response = lead.post(
        url, {"action": "set_priority", "_selected_action": ids, "priority": "x"}, follow=True
    )
    assert "The priority must be a whole number" in response.content.decode()
    response = lead.post(url, {"action": "resume_batches", "_selected_action": ids})
    assert set(Batch.objects.values_list("status", flat=True)) == {"active"}
    response = lead.post(url, {"action": "resume_batches", "_selected_action": ids}, follow=True)
    assert "it cannot resume" in response.content.decode()
    assert len(events("batch_status")) == 4


def test_the_status_set_in_the_form_is_audited_and_limited(lead, batch):
    data = {"name": "b", "status": "paused", "priority": "2", "annotator_cap": ""}
    assert lead.post(batch_url(batch), data).status_code == 302
    batch.refresh_from_db()
    assert (batch.status, batch.priority) == ("paused", 2)
    assert [e.details["status"] for e in events("batch_status")] == [
        {"old": "active", "new": "paused"}
    ]
    response = lead.post(batch_url(batch), {**data, "status": "importing"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()


def test_reclaim_now_returns_expired_leases_to_the_pool(lead, project, annotators, batch):
    # The live lease first: asking for work reclaims expired leases on the way.
    live = assignment_next(project=project, annotator=annotators[1])
    lease = assignment_next(
        project=project, annotator=annotators[0], now=timezone.now() - timedelta(hours=1)
    )
    assert lease is not None and live is not None
    response = lead.post(batch_url(batch, "act/reclaim/"), follow=True)
    assert "Reclaimed 1 expired lease(s)" in response.content.decode()
    lease.refresh_from_db()
    live.refresh_from_db()
    assert lease.status == AssignmentStatus.EXPIRED and live.status == AssignmentStatus.OPEN
    assert Comparison.objects.get(pk=lease.comparison_id).lease_count == (
        1 if live.comparison_id == lease.comparison_id else 0
    )
    [event] = events("leases_reclaimed")
    assert event.details == {"reclaimed": 1} and event.project == project


def test_leads_cannot_act_on_other_projects_batches(lead, other, import_rows):
    theirs = import_rows(prompt_line("x"), target=other)
    assert lead.post(batch_url(theirs, "act/pause/")).status_code == 403
    assert lead.get(batch_url(theirs, "progress/")).status_code == 404
    lead.post("/admin/batches/batch/", {"action": "pause_batches", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.status == "active" and not events("batch_status")


def test_the_progress_fragment_follows_the_import(lead, project):
    batch = Batch.objects.create(project=project, name="big", rows_total=400)
    url = batch_url(batch, "progress/")
    html = lead.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'value="0"' in html and "waiting for a worker (400 lines)" in html
    assert f'hx-get="{url}"' in html and 'hx-trigger="every 1s"' in html
    Batch.objects.filter(pk=batch.pk).update(rows_done=100)
    html = lead.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'value="12"' in html and "checking line 100 of 400" in html
    cache.set(STORE_PROGRESS_KEY.format(batch.pk), [300, 1200])
    try:
        html = lead.get(url, HTTP_HX_REQUEST="true").content.decode()
    finally:
        cache.delete(STORE_PROGRESS_KEY.format(batch.pk))
    assert 'value="62"' in html and "storing row 300 of 1200" in html
    page = lead.get(batch_url(batch)).content.decode()
    assert 'id="import-progress"' in page and f'hx-get="{url}"' in page
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.ACTIVE, prompt_count=3)
    response = lead.get(url, HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true"
    assert "hx-get" not in response.content.decode()
    assert "Import active: 3 prompts" in response.content.decode()


def test_the_check_reports_lines_and_the_store_reports_rows(project):
    data = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(5)))
    seen: list[int] = []
    prompts = parse_jsonl(io.BytesIO(data), progress=seen.append, progress_every=2)
    assert seen == [2, 4]
    from apps.batches.services import _batch_store

    stored: list[tuple[int, int]] = []
    batch = Batch.objects.create(project=project)
    _batch_store(batch=batch, prompts=prompts, progress=lambda d, t: stored.append((d, t)))
    assert stored[-1] == (5 + 15 + 15, 35)
    batch.refresh_from_db()
    assert (batch.rows_done, batch.rows_total) == (5, 5)


def test_a_background_upload_shows_its_progress_and_ends_active(
    lead, bob, project, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_BYTES = 10
    upload = SimpleUploadedFile("big.jsonl", jsonl(*(prompt_line(f"p{i}") for i in range(30))))
    with django_capture_on_commit_callbacks(execute=True):
        response = lead.post(
            "/admin/batches/batch/upload/", {"project": project.pk, "name": "", "file": upload}
        )
    batch = Batch.objects.get()
    assert response["Location"] == batch_url(batch)
    assert (batch.status, batch.prompt_count, batch.rows_total, batch.rows_done) == (
        "active",
        30,
        30,
        30,
    )
    started, finished = events("import_started"), events("import_finished")
    assert started[0].details == {"name": "big.jsonl", "bytes": upload.size, "background": True}
    assert finished[0].details["comparisons"] == 30 and finished[0].actor == bob


def test_failed_imports_are_audited_with_their_first_errors(
    lead, project, settings, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("bad.jsonl", jsonl(prompt_line("a"), "{nope"))
    lead.post("/admin/batches/batch/upload/", {"project": project.pk, "name": "", "file": upload})
    [failed] = events("import_failed")
    assert failed.target_id == "" and failed.details["errors"] == 1
    assert failed.details["first_errors"][0]["line"] == 2
    settings.IMPORT_BACKGROUND_BYTES = 10
    upload = SimpleUploadedFile("bad2.jsonl", jsonl(prompt_line("a"), "{nope", "[]"))
    with django_capture_on_commit_callbacks(execute=True):
        lead.post(
            "/admin/batches/batch/upload/", {"project": project.pk, "name": "", "file": upload}
        )
    batch = Batch.objects.get()
    assert batch.status == "failed"
    failed = events("import_failed")[1]
    assert failed.target_id == str(batch.pk) and failed.details["errors"] == 2


# The audit log.


def test_the_audit_log_is_scoped_filterable_and_read_only(lead, client, alice, bob, other):
    project = Project.objects.get(slug="demo")
    mine = audit_record(actor=bob, action="export", project=project, details={"format": "trl"})
    theirs = audit_record(actor=alice, action="export", project=other)
    audit_record(actor=alice, action="batch_priority", project=project)
    html = lead.get("/admin/audit/auditevent/").content.decode()
    assert f"/admin/audit/auditevent/{mine.pk}/change/" in html
    assert f"/admin/audit/auditevent/{theirs.pk}/change/" not in html
    filtered = lead.get("/admin/audit/auditevent/?action__exact=export").content.decode()
    results = filtered.split('id="result_list"')[1].split("</table>")[0]
    assert "Export" in results and "Batch priority changed" not in results
    assert lead.get(f"/admin/audit/auditevent/{theirs.pk}/change/").status_code == 302
    page = lead.get(f"/admin/audit/auditevent/{mine.pk}/change/")
    assert page.status_code == 200 and "&quot;format&quot;: &quot;trl&quot;" in (
        page.content.decode()
    )
    assert lead.get("/admin/audit/auditevent/add/").status_code == 403
    assert lead.post(f"/admin/audit/auditevent/{mine.pk}/delete/", {"post": "yes"}).status_code == (
        403
    )
    client.force_login(alice)
    assert f"/admin/audit/auditevent/{theirs.pk}/change/" in (
        client.get("/admin/audit/auditevent/").content.decode()
    )


def test_audit_record_refuses_unknown_actions(bob):
    with pytest.raises(ValueError, match="unknown audit action"):
        audit_record(actor=bob, action="explode")


def test_a_deleted_actor_keeps_their_name_in_the_log(project, make_user):
    gone = make_user("gone")
    event = audit_record(actor=gone, action="export", project=project)
    gone.delete()
    event.refresh_from_db()
    assert (event.actor, event.actor_name) == (None, "gone")


def test_the_sync_import_service_records_start_and_finish(project, bob):
    data = jsonl(prompt_line("a"))
    batch = batch_import(
        project=project, source=io.BytesIO(data), size=len(data), created_by=bob, background=False
    )
    imports = AuditEvent.objects.filter(action__startswith="import_").order_by("id")
    assert [e.action for e in imports] == ["import_started", "import_finished"]
    assert all(e.target_id == str(batch.pk) for e in imports)


def test_an_assignment_of_a_deactivated_annotator_is_not_open(project, annotators, batch):
    # Deactivating through the service directly, as staff.
    from apps.accounts.services import account_deactivate

    staff = User.objects.get(username="alice")
    lease = assignment_next(project=project, annotator=annotators[1])
    assert lease is not None
    assert account_deactivate(account=annotators[1], by=staff) == 1
    assert not Assignment.objects.filter(annotator=annotators[1], status="open").exists()


EXPORTS = "/admin/exports/exportjob/"


def test_leads_cancel_queued_exports_and_download_done_ones_from_the_admin(
    lead, project, bob, other, settings, tmp_path
):
    from apps.exports.models import ExportJob, ExportStatus

    settings.EXPORT_ROOT = tmp_path / "exports"
    queued = ExportJob.objects.create(project=project, requested_by=bob, format="trl")
    done = lead.post("/api/v1/projects/demo/exports/", {"format": "judgments"})
    assert done.status_code == 202
    done_id = done.json()["id"]
    foreign = ExportJob.objects.create(project=other, format="trl")
    page = lead.get(EXPORTS).content.decode()
    assert f"/api/v1/projects/demo/exports/{done_id}/download/" in page
    assert f"/api/v1/projects/demo/exports/{done_id}/card/" in page
    response = lead.post(
        EXPORTS,
        {"action": "cancel_jobs", "_selected_action": [queued.pk, done_id, foreign.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert f"Cancelled export {queued.pk}." in text
    assert f"Export {done_id} is done: only a queued or running export can be cancelled" in text
    statuses = dict(ExportJob.objects.values_list("pk", "status"))
    assert statuses == {
        queued.pk: ExportStatus.CANCELLED,
        done_id: ExportStatus.DONE,
        foreign.pk: ExportStatus.QUEUED,  # not bob's to see, nor to cancel
    }
    [event] = events("export_cancelled")
    assert event.actor == bob and event.project == project
    assert lead.get(f"/api/v1/projects/demo/exports/{done_id}/download/").status_code == 200
