"""Who reaches what in the admin: each role against each object type and each custom view.

Roles: staff (alice), a lead (bob, of `demo`), an annotator (ann), an outsider (charlie). Each
object type has one object in bob's project and one in another project (led by dora).
"""

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.batches.models import Batch, Candidate, Comparison, Prompt
from apps.judging.models import Assignment, Judgment, Skip
from apps.judging.queue import assignment_next, assignment_skip, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.conftest import prompt_line


def _activity(project: Project, voter: User, skipper: User, holder: User, actor: User) -> None:
    """A judgment, a skip, an open lease and an audit event in the project."""
    lease = assignment_next(project=project, annotator=voter)
    assert lease is not None
    judgment_submit(assignment_id=lease.pk, annotator=voter, choice="left")
    lease = assignment_next(project=project, annotator=skipper)
    assert lease is not None
    assignment_skip(assignment_id=lease.pk, annotator=skipper, reason="other", note="unsure")
    assert assignment_next(project=project, annotator=holder) is not None
    audit_record(actor=actor, action="export", project=project)


@pytest.fixture
def world(alice, bob, charlie, annotators, project, make_user, import_rows) -> dict[str, Project]:
    project.skip_reasons = []
    project.save()
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(3)))
    _activity(project, annotators[0], annotators[1], annotators[2], bob)
    other = project_create(slug="other", name="Other project", skip_reasons=[])
    dora = make_user("dora")
    membership_add(project=other, user=dora, role="lead")
    others = [make_user(name) for name in ("eve", "fay", "gus")]
    for user in others:
        membership_add(project=other, user=user, role="annotator")
    import_rows(*(prompt_line(f"q-{i}", n=3) for i in range(3)), target=other)
    _activity(other, others[0], others[1], others[2], dora)
    return {"mine": project, "theirs": other}


def _one(model: Any, **filters: Any) -> Any:
    return model.objects.filter(**filters).order_by("pk").first()


# name -> (admin path, the object of a project)
TYPES: dict[str, tuple[str, Callable[[Project], Any]]] = {
    "project": ("projects/project", lambda p: p),
    "batch": ("batches/batch", lambda p: _one(Batch, project=p)),
    "prompt": ("batches/prompt", lambda p: _one(Prompt, project=p)),
    "candidate": ("batches/candidate", lambda p: _one(Candidate, prompt__project=p)),
    "comparison": ("batches/comparison", lambda p: _one(Comparison, project=p)),
    "judgment": ("judging/judgment", lambda p: _one(Judgment, comparison__project=p)),
    "assignment": ("judging/assignment", lambda p: _one(Assignment, project=p)),
    "skip": ("judging/skip", lambda p: _one(Skip, comparison__project=p)),
    "audit event": ("audit/auditevent", lambda p: _one(AuditEvent, project=p)),
    "annotator account": (
        "accounts/annotatoraccount",
        lambda p: _one(User, memberships__project=p, memberships__role="annotator"),
    ),
}
# What "add" does per type, for staff and leads alike: a form, a redirect to the custom
# form that replaces it, or a refusal.
ADD = {
    "project": 200,
    "batch": 302,
    "annotator account": 302,
}
EDITABLE = {"project", "batch"}
DELETABLE_BY_STAFF = {"project"}  # a batch is deleted by its action, which keeps the rules


def _login(client: Any, username: str) -> Any:
    client.force_login(User.objects.get(username=username))
    return client


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("username", ["ann", "charlie"])
def test_annotators_and_outsiders_reach_nothing(client, world, kind, username):
    path, of = TYPES[kind]
    _login(client, username)
    obj = of(world["mine"])
    for url in (
        f"/admin/{path}/",
        f"/admin/{path}/add/",
        f"/admin/{path}/{obj.pk}/change/",
        f"/admin/{path}/{obj.pk}/delete/",
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


@pytest.mark.parametrize("kind", TYPES)
def test_staff_see_and_change_everything_the_admin_allows(client, world, kind):
    path, of = TYPES[kind]
    _login(client, "alice")
    listing = client.get(f"/admin/{path}/")
    assert listing.status_code == 200
    for which in ("mine", "theirs"):
        obj = of(world[which])
        assert f"/admin/{path}/{obj.pk}/change/" in listing.content.decode(), which
        page = client.get(f"/admin/{path}/{obj.pk}/change/")
        assert page.status_code == 200
        assert ('name="_save"' in page.content.decode()) == (kind in EDITABLE)
        delete = client.get(f"/admin/{path}/{obj.pk}/delete/")
        assert delete.status_code == (200 if kind in DELETABLE_BY_STAFF else 403)
    assert client.get(f"/admin/{path}/add/").status_code == ADD.get(kind, 403)


@pytest.mark.parametrize("kind", TYPES)
def test_leads_see_and_change_only_their_projects(client, world, kind):
    path, of = TYPES[kind]
    _login(client, "bob")
    listing = client.get(f"/admin/{path}/").content.decode()
    mine, theirs = of(world["mine"]), of(world["theirs"])
    assert f"/admin/{path}/{mine.pk}/change/" in listing
    assert f"/admin/{path}/{theirs.pk}/change/" not in listing
    page = client.get(f"/admin/{path}/{mine.pk}/change/")
    assert page.status_code == 200
    assert ('name="_save"' in page.content.decode()) == (kind in EDITABLE)
    # Another project's object does not exist for them: the admin redirects to its index.
    response = client.get(f"/admin/{path}/{theirs.pk}/change/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get(f"/admin/{path}/{mine.pk}/delete/").status_code in (302, 403)
    assert client.get(f"/admin/{path}/{theirs.pk}/delete/").status_code in (302, 403)
    response = client.post(f"/admin/{path}/{mine.pk}/delete/", {"post": "yes"})
    assert response.status_code in (302, 403)
    assert type(mine).objects.filter(pk=mine.pk).exists()
    assert client.get(f"/admin/{path}/add/").status_code == ADD.get(kind, 403)


def test_a_lead_cannot_change_another_projects_settings(client, world):
    _login(client, "bob")
    theirs = world["theirs"]
    response = client.post(f"/admin/projects/project/{theirs.pk}/change/", {"name": "Mine now"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    theirs.refresh_from_db()
    assert theirs.name == "Other project"


def test_a_lead_cannot_change_another_projects_batch(client, world):
    _login(client, "bob")
    batch = Batch.objects.get(project=world["theirs"])
    response = client.post(
        f"/admin/batches/batch/{batch.pk}/change/", {"name": "x", "status": "paused"}
    )
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.status == "active"


# Custom views, per role: (method, url template, expected for staff, for the lead).
CUSTOM = [
    ("get", "/admin/batches/batch/upload/", 200, 200),
    ("post", "/admin/batches/batch/{mine_batch}/act/pause/", 302, 302),
    ("post", "/admin/batches/batch/{their_batch}/act/pause/", 302, 403),
    ("get", "/admin/batches/batch/{mine_batch}/progress/", 200, 200),
    ("get", "/admin/batches/batch/{their_batch}/progress/", 200, 404),
    ("post", "/admin/projects/project/preview/", 200, 200),
    ("get", "/admin/accounts/annotatoraccount/create/", 200, 200),
]


@pytest.mark.parametrize(("method", "url", "staff", "lead"), CUSTOM)
def test_custom_views_per_role(client, world, method, url, staff, lead):
    url = url.format(
        mine_batch=Batch.objects.get(project=world["mine"]).pk,
        their_batch=Batch.objects.get(project=world["theirs"]).pk,
    )
    for username, expected in (("alice", staff), ("bob", lead)):
        _login(client, username)
        response = getattr(client, method)(url)
        assert response.status_code == expected, (username, url)
        Batch.objects.update(status="active")
    for username in ("ann", "charlie"):
        _login(client, username)
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Batch.objects.filter(project=world["theirs"], status="active").exists()
