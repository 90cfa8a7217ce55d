"""The admin: staff see everything, leads only their projects, annotators nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.batches.models import Batch, Comparison, Prompt
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.conftest import jsonl, prompt_line


@pytest.fixture
def other(alice, import_rows, make_user):
    """A second project with its own lead (dora), data and a judgment."""
    project = project_create(slug="other", name="Other project")
    dora = make_user("dora")
    membership_add(project=project, user=dora, role="lead")
    membership_add(project=project, user=dora, role="lead")
    import_rows(prompt_line("secret-prompt"), target=project)
    lease = assignment_next(project=project, annotator=dora)
    judgment_submit(assignment_id=lease.pk, annotator=dora, choice="left")
    return project


@pytest.fixture
def judged(project, annotators, batch):
    lease = assignment_next(project=project, annotator=annotators[0])
    return judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left").judgment


def test_annotators_never_reach_the_admin(client, annotators, batch):
    client.force_login(annotators[0])
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_leads_reach_the_admin_without_being_staff(client, bob, batch):
    client.force_login(bob)
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Batches" in html and "Judgments" in html
    assert "/admin/auth/user/" not in html


CHANGELISTS = [
    ("/admin/projects/project/", "Other project"),
    ("/admin/batches/batch/", "Other project"),
    ("/admin/batches/prompt/", "secret-prompt"),
    ("/admin/batches/comparison/", "Other project"),
    ("/admin/judging/judgment/", "dora"),
    ("/admin/judging/assignment/", "dora"),
    ("/admin/batches/candidate/", "secret-prompt"),
]


@pytest.mark.parametrize(("url", "marker"), CHANGELISTS)
def test_leads_see_only_their_projects(client, bob, judged, other, url, marker):
    client.force_login(bob)
    response = client.get(url)
    assert response.status_code == 200
    assert marker not in response.content.decode()


@pytest.mark.parametrize(("url", "marker"), CHANGELISTS)
def test_staff_see_everything(client, alice, judged, other, url, marker):
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    assert marker in response.content.decode()


@pytest.mark.parametrize(
    "model", ["projects.project", "batches.batch", "batches.prompt", "judging.judgment"]
)
def test_leads_cannot_open_another_projects_objects(client, bob, other, model):
    app, name = model.split(".")
    obj = {
        "projects.project": lambda: other,
        "batches.batch": lambda: Batch.objects.get(project=other),
        "batches.prompt": lambda: Prompt.objects.get(project=other),
        "judging.judgment": lambda: Judgment.objects.get(comparison__project=other),
    }[model]()
    client.force_login(bob)
    response = client.get(f"/admin/{app}/{name}/{obj.pk}/change/")
    assert response.status_code == 302  # the admin redirects to its index: no such object
    assert client.get(f"/admin/{app}/{name}/{obj.pk}/delete/").status_code in (302, 403)


def test_leads_edit_their_project_and_create_one_they_then_lead(client, bob, project):
    from apps.projects.models import GuidelineVersion, Membership

    client.force_login(bob)
    assert client.get(f"/admin/projects/project/{project.pk}/change/").status_code == 200
    assert client.get("/admin/projects/project/add/").status_code == 200
    data = _project_form(project, name="Fresh", slug="fresh", guidelines="# Hi")
    response = client.post("/admin/projects/project/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    fresh = Project.objects.get(slug="fresh")
    assert fresh.created_by == bob and fresh.skip_reasons == ["Unclear"]
    assert Membership.objects.filter(project=fresh, user=bob, role="lead").exists()
    assert GuidelineVersion.objects.get(project=fresh).text == "# Hi"
    assert client.get(f"/admin/projects/project/{fresh.pk}/change/").status_code == 200


def test_judgments_cannot_be_changed_or_deleted_in_the_admin(client, alice, judged):
    client.force_login(alice)
    response = client.post(f"/admin/judging/judgment/{judged.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Judgment.objects.filter(pk=judged.pk).exists()
    page = client.get(f"/admin/judging/judgment/{judged.pk}/change/").content.decode()
    assert 'name="choice"' not in page


def test_deleting_a_project_with_judgments_is_refused(client, alice, judged):
    client.force_login(alice)
    project = judged.comparison.project
    response = client.post(f"/admin/projects/project/{project.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200
    assert "Cannot delete project" in response.content.decode()
    assert Judgment.objects.filter(pk=judged.pk).exists()


def test_upload_lists_line_errors_and_stores_nothing(client, bob, project):
    client.force_login(bob)
    upload = SimpleUploadedFile(
        "bad.jsonl", jsonl(prompt_line("a"), "{nope", prompt_line("b", n=1))
    )
    response = client.post(
        "/admin/batches/batch/upload/", {"project": project.pk, "name": "", "file": upload}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was stored" in html
    assert "<td>2</td>" in html and "invalid JSON" in html
    assert "<td>3</td>" in html and "at least 2 responses" in html
    assert Batch.objects.count() == 0 and Prompt.objects.count() == 0


def test_upload_imports_a_good_file(client, bob, project):
    client.force_login(bob)
    upload = SimpleUploadedFile("good.jsonl", jsonl(prompt_line("a", n=3)))
    response = client.post(
        "/admin/batches/batch/upload/", {"project": project.pk, "name": "", "file": upload}
    )
    batch = Batch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/batches/batch/{batch.pk}/change/"
    assert (batch.name, batch.comparison_count) == ("good.jsonl", 3)
    page = client.get("/admin/batches/batch/").content.decode()
    assert "0 / 3" in page


def test_upload_offers_only_the_leads_projects(client, bob, project, other):
    client.force_login(bob)
    html = client.get("/admin/batches/batch/upload/").content.decode()
    assert "Other project" not in html and "Demo" in html
    upload = SimpleUploadedFile("x.jsonl", jsonl(prompt_line("z")))
    response = client.post(
        "/admin/batches/batch/upload/", {"project": other.pk, "name": "", "file": upload}
    )
    assert response.status_code == 200
    assert Comparison.objects.filter(project=other).count() == 1


def test_the_add_button_leads_to_the_upload_form(client, bob, project):
    client.force_login(bob)
    response = client.get("/admin/batches/batch/add/")
    assert response.status_code == 302 and response["Location"].endswith("/upload/")


def test_leads_can_pause_their_batch(client, bob, batch):
    client.force_login(bob)
    response = client.post(
        f"/admin/batches/batch/{batch.pk}/change/",
        {"name": "b", "status": "paused", "priority": "5"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    batch.refresh_from_db()
    assert (batch.status, batch.priority) == ("paused", 5)


def test_leads_add_members_by_username_without_seeing_every_account(client, bob, project, alice):
    client.force_login(bob)
    page = client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert "alice" not in page  # no list of all accounts
    from django.contrib.auth.models import User

    User.objects.create_user("newbie")
    memberships = list(project.memberships.select_related("user"))
    data = _project_form(
        project,
        **{
            "memberships-TOTAL_FORMS": str(len(memberships) + 1),
            "memberships-INITIAL_FORMS": str(len(memberships)),
        },
    )
    for index, membership in enumerate(memberships):
        data.update(
            {
                f"memberships-{index}-id": str(membership.pk),
                f"memberships-{index}-project": str(project.pk),
                f"memberships-{index}-username": membership.user.username,
                f"memberships-{index}-role": membership.role,
            }
        )
    new = len(memberships)
    data.update(
        {
            f"memberships-{new}-project": str(project.pk),
            f"memberships-{new}-username": "nobody-here",
            f"memberships-{new}-role": "annotator",
        }
    )
    response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
    assert response.status_code == 200
    assert "No user named" in response.content.decode()
    data[f"memberships-{new}-username"] = "newbie"
    response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert project.memberships.filter(user__username="newbie", role="annotator").exists()


def test_leads_see_why_an_annotator_gets_no_more_work(client, bob, project, annotators):
    from apps.projects.models import Membership

    project.gold_min_accuracy = 0.9
    project.gold_min_answers = 4
    project.save()
    Membership.objects.filter(project=project, user=annotators[0]).update(
        gold_answered=5, gold_correct=2, judgment_count=7, skip_count=1
    )
    client.force_login(bob)
    html = client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert "40% (2 of 5)" in html
    assert "No: gold accuracy 40% over 5 gold items is below the project&#x27;s minimum" in html


def _project_form(project, **changes):
    data = {
        "name": project.name,
        "guidelines": project.guidelines,
        "overlap": "3",
        "allow_tie": "on",
        "allow_both_bad": "on",
        "lease_seconds": "600",
        "policy": "breadth_first",
        "skip_reasons": "Unclear",
        "scheme": "pairwise",
        "criteria": "",
        "rationale": "optional",
        "rationale_min_length": "0",
        "flags": "",
        "gold_rate": "0",
        "gold_min_accuracy": "0",
        "gold_min_answers": "10",
        "stop_confidence": "",
        "honeypot_rate": "0",
        "audit_rate": "0",
        "repeat_rate": "0",
        "repeat_after": "20",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def test_editing_the_guidelines_in_the_admin_makes_a_new_version(client, bob, project):
    from apps.projects.models import GuidelineVersion

    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, guidelines="Be **fair**."))
    assert response.status_code == 302, response.content.decode()[:2000]
    response = client.post(url, _project_form(project, guidelines="Be **fair**.", overlap="4"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version, project.overlap) == (
        "Be **fair**.",
        2,
        4,
    )
    versions = list(GuidelineVersion.objects.filter(project=project).order_by("version"))
    assert [(v.version, v.text, v.created_by) for v in versions] == [
        (1, "", project.created_by),
        (2, "Be **fair**.", bob),
    ]


def test_the_admin_refuses_malformed_criteria(client, bob, project):
    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    bad = _project_form(project, scheme="graded", criteria="<b>x</b>: bold")
    response = client.post(url, bad)
    assert response.status_code == 200
    assert "is not a name" in response.content.decode()
    project.refresh_from_db()
    assert project.scheme == "pairwise"


def test_leads_log_in_through_the_admins_own_form(client, bob, project):
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "bob", "password": "pw-for-tests", "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_annotators_cannot_log_in_through_the_admins_form(client, annotators, project):
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ann", "password": "pw-for-tests", "next": "/admin/"},
    )
    assert response.status_code == 200
    assert "staff account" in response.content.decode()
