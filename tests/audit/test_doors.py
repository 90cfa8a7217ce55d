"""One audit trail, whatever the door: each write about projects and members, made through the
admin, the API, a management command and the services directly (as a task would), leaves one
record, with the same fields."""

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from apps.accounts.services import accounts_add_to_project
from apps.audit.models import AuditEvent
from apps.projects.models import Project
from apps.projects.services import membership_add, membership_remove, project_create
from tests.conftest import api_client_for
from tests.projects.test_admin import _project_form

# The fields a project_created record carries in its details, through every door.
CREATED_DETAILS = {
    "slug",
    "name",
    "overlap",
    "allow_tie",
    "allow_both_bad",
    "lease_seconds",
    "policy",
    "skip_reasons",
    "annotator_cap",
    "scheme",
    "criteria",
    "rationale",
    "rationale_min_length",
    "flags",
    "show_models",
    "show_ai_suggestion",
    "gold_rate",
    "gold_min_accuracy",
    "gold_min_answers",
    "stop_confidence",
    "honeypot_rate",
    "audit_rate",
    "repeat_rate",
    "repeat_after",
}


def _new_events(since: int, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=since, action=action).order_by("pk"))


def _last_id() -> int:
    last = AuditEvent.objects.order_by("-pk").first()
    return last.pk if last is not None else 0


# Project creation, per door: (door, who) -> the project's slug.


def _admin_create(client: Any, username: str, slug: str) -> None:
    client.force_login(User.objects.get(username=username))
    data = _project_form(Project(name=slug.title()), slug=slug, guidelines="Hello")
    response = client.post("/admin/projects/project/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == "/admin/projects/project/"


def _api_create(client: Any, username: str, slug: str) -> None:
    response = api_client_for(User.objects.get(username=username)).post(
        "/api/v1/projects/", {"slug": slug, "name": slug.title(), "guidelines": "Hello"}
    )
    assert response.status_code == 201, response.content


def _service_create(client: Any, username: str, slug: str) -> None:
    project_create(
        slug=slug,
        name=slug.title(),
        guidelines="Hello",
        created_by=User.objects.filter(username=username).first(),
    )


CREATE_DOORS: dict[str, Callable[[Any, str, str], None]] = {
    "admin": _admin_create,
    "api": _api_create,
    "service": _service_create,
}


@pytest.mark.parametrize(
    ("door", "username"),
    [
        ("admin", "alice"),
        ("admin", "bob"),
        ("api", "alice"),
        ("service", "alice"),
        ("service", "bob"),
        ("service", "nobody"),
    ],
)
def test_creating_a_project_is_recorded_once_alike_through_every_door(
    client, project, door, username
):
    # bob leads `demo`: that lets him into the admin.
    since = _last_id()
    CREATE_DOORS[door](client, username, "fresh")
    project = Project.objects.get(slug="fresh")
    [created] = _new_events(since, "project_created")
    actor = User.objects.filter(username=username).first()
    assert (created.actor, created.project, created.target_type, created.target_id) == (
        actor,
        project,
        "projects.project",
        str(project.pk),
    )
    assert set(created.details) == CREATED_DETAILS
    assert (created.details["slug"], created.details["overlap"]) == ("fresh", 3)
    # A lead who creates a project leads it, and that membership is recorded too.
    added = _new_events(since, "membership_added")
    if actor is not None and not actor.is_staff:
        [lead] = added
        assert (lead.actor, lead.details) == (actor, {"user": username, "role": "lead"})
    else:
        assert not added


def test_the_demo_command_records_what_it_creates(db):
    call_command("demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())
    demo = Project.objects.get(slug="demo")
    [created] = AuditEvent.objects.filter(action="project_created", project=demo)
    assert created.actor is not None and created.actor.username == "admin"
    assert set(created.details) == CREATED_DETAILS
    added = AuditEvent.objects.filter(action="membership_added", project=demo)
    assert sorted((e.details["user"], e.details["role"]) for e in added) == [
        ("annotator1", "annotator"),
        ("annotator2", "annotator"),
        ("annotator3", "annotator"),
        ("lead", "lead"),
    ]
    assert all(e.actor is None and e.target_type == "auth.user" for e in added)
    # Run again, it changes nothing and records nothing.
    since = _last_id()
    call_command("demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())
    assert not AuditEvent.objects.filter(pk__gt=since, action__startswith="membership")
    assert not AuditEvent.objects.filter(pk__gt=since, action="project_created")


# Membership changes, per door. Each door makes `newbie` an annotator of `demo` as bob, then
# (where the door can) a lead, then removes them.


def _inline(client: Any, project: Project, rows: list[dict[str, str]]) -> None:
    client.force_login(User.objects.get(username="bob"))
    data = _project_form(
        project,
        skip_reasons="\n".join(project.skip_reasons),
        **{"memberships-TOTAL_FORMS": str(len(rows)), "memberships-INITIAL_FORMS": "0"},
    )
    for index, row in enumerate(rows):
        if "id" in row:
            data["memberships-INITIAL_FORMS"] = str(int(data["memberships-INITIAL_FORMS"]) + 1)
        data.update({f"memberships-{index}-{key}": value for key, value in row.items()})
        data[f"memberships-{index}-project"] = str(project.pk)
    response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]


def _newbie_row(project: Project, **changes: str) -> dict[str, str]:
    membership = project.memberships.filter(user__username="newbie").first()
    row = {"username": "newbie", "role": "annotator"}
    if membership is not None:
        row["id"] = str(membership.pk)
    return {**row, **changes}


def _admin_add(client: Any, project: Project) -> None:
    _inline(client, project, [_newbie_row(project)])


def _admin_promote(client: Any, project: Project) -> None:
    _inline(client, project, [_newbie_row(project, role="lead")])


def _admin_remove(client: Any, project: Project) -> None:
    _inline(client, project, [_newbie_row(project, role="lead", DELETE="on")])


def _api_member(role: str) -> Callable[[Any, Project], None]:
    def post(client: Any, project: Project) -> None:
        bob = User.objects.get(username="bob")
        response = api_client_for(bob).post(
            f"/api/v1/projects/{project.slug}/members/", {"username": "newbie", "role": role}
        )
        assert response.status_code == 201, response.content

    return post


def _action_add(client: Any, project: Project) -> None:
    bob = User.objects.get(username="bob")
    accounts_add_to_project(accounts=[User.objects.get(username="newbie")], project=project, by=bob)


def _service(role: str | None) -> Callable[[Any, Project], None]:
    def call(client: Any, project: Project) -> None:
        bob, newbie = User.objects.get(username="bob"), User.objects.get(username="newbie")
        if role is None:
            membership_remove(project=project, user=newbie, by=bob)
        else:
            membership_add(project=project, user=newbie, role=role, by=bob)

    return call


ADD_DOORS = {
    "admin": _admin_add,
    "api": _api_member("annotator"),
    "accounts action": _action_add,
    "service": _service("annotator"),
}
PROMOTE_DOORS = {"admin": _admin_promote, "api": _api_member("lead"), "service": _service("lead")}
REMOVE_DOORS = {"admin": _admin_remove, "service": _service(None)}


@pytest.fixture
def newbie(make_user, project):
    # The admin's inline sees every member: keep the project to bob and newbie.
    project.memberships.exclude(role="lead").delete()
    return make_user("newbie")


def _check(since: int, action: str, project: Project, details: dict[str, Any]) -> None:
    [event] = _new_events(since, action)
    newbie = User.objects.get(username="newbie")
    assert (event.actor_name, event.project, event.target_type, event.target_id) == (
        "bob",
        project,
        "auth.user",
        str(newbie.pk),
    )
    assert event.details == details
    assert AuditEvent.objects.filter(pk__gt=since).count() == 1  # nothing recorded twice


@pytest.mark.parametrize("add", ADD_DOORS)
@pytest.mark.parametrize("promote", PROMOTE_DOORS)
@pytest.mark.parametrize("remove", REMOVE_DOORS)
def test_membership_changes_are_recorded_once_alike_through_every_door(
    client, project, newbie, add, promote, remove
):
    since = _last_id()
    ADD_DOORS[add](client, project)
    _check(since, "membership_added", project, {"user": "newbie", "role": "annotator"})
    since = _last_id()
    PROMOTE_DOORS[promote](client, project)
    role = {"old": "annotator", "new": "lead"}
    _check(since, "membership_changed", project, {"user": "newbie", "role": role})
    since = _last_id()
    REMOVE_DOORS[remove](client, project)
    _check(since, "membership_removed", project, {"user": "newbie", "role": "lead"})
    assert not project.memberships.filter(user=newbie).exists()


def test_creating_accounts_records_their_memberships(client, project):
    client.force_login(User.objects.get(username="bob"))
    since = _last_id()
    client.post(
        "/admin/accounts/annotatoraccount/create/",
        {"emails": "new@example.org", "projects": [project.pk]},
    )
    [created] = _new_events(since, "account_created")
    [added] = _new_events(since, "membership_added")
    assert created.actor_name == added.actor_name == "bob"
    assert added.details == {"user": "new@example.org", "role": "annotator"}


def test_changing_the_guidelines_is_recorded_by_the_service(project, bob):
    from apps.projects.services import project_guidelines_set

    since = _last_id()
    assert project_guidelines_set(project=project, text="New rules", by=bob)
    [changed] = _new_events(since, "guidelines_changed")
    assert (changed.actor, changed.details) == (bob, {"version": 2, "characters": 9})
