"""Boundaries between projects: what each role may do to each kind of account, by every door.

The invariant: a lead never changes an account that is also a member of a project they do not
lead (no deactivation, no set-password link, no reactivation, no e-mail change), and cannot
make it such an account by adding it: an account already in another project joins theirs only
through staff. A username they may not add gets the answer an unknown one gets.

Roles: staff (alice), a lead (bob, of `demo` and `second`), an annotator (ann), an outsider
(charlie). Accounts: ann (only in bob's projects), sam (an annotator of bob's and of dora's),
eve (only dora's annotator), dora (the lead of `other`), alice (staff), nora (in no project).
"""

from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.accounts.services import (
    AccountCsvError,
    AccountError,
    CsvLineError,
    account_deactivate,
    account_link_issue,
    account_reactivate,
    accounts_add_to_project,
)
from apps.accounts.tokens import TokenRefused
from apps.audit.models import AuditEvent
from apps.projects.models import Membership, Project
from apps.projects.services import (
    NOT_ADDABLE,
    ProjectError,
    membership_add,
    membership_remove,
    project_create,
)
from tests.projects.test_admin import _project_form

ACCOUNTS = "/admin/accounts/annotatoraccount/"
MEMBERS = "/api/v1/projects/demo/members/"


@pytest.fixture
def world(alice, bob, charlie, annotators, project, make_user) -> dict[str, Project]:
    second = project_create(slug="second", name="Second")
    membership_add(project=second, user=bob, role="lead")
    other = project_create(slug="other", name="Other project")
    membership_add(project=other, user=make_user("dora"), role="lead")
    membership_add(project=other, user=make_user("eve"), role="annotator")
    sam = make_user("sam")
    membership_add(project=project, user=sam, role="annotator")
    membership_add(project=other, user=sam, role="annotator")
    make_user("nora")
    return {"demo": project, "second": second, "other": other}


def _user(username: str) -> User:
    return User.objects.get(username=username)


def _unusable(username: str) -> None:
    account = _user(username)
    account.set_unusable_password()
    account.save()


# The role x account matrix of account changes. Who may change whom (deactivate, reactivate,
# issue a set-password link): staff any account but staff; bob only ann.
ACCOUNT_NAMES = ["ann", "sam", "eve", "dora", "alice", "nora"]
MAY_CHANGE = {
    "alice": {"ann", "sam", "eve", "dora", "nora"},
    "bob": {"ann"},
    "ann": set(),
    "charlie": set(),
}


def _act(client: Any, action: str, account: User) -> Any:
    return client.post(
        ACCOUNTS, {"action": action, "_selected_action": [account.pk], "apply": "1"}, follow=True
    )


def _changed(action: str, username: str) -> bool:
    account = _user(username)
    if action == "deactivate_accounts":
        return not account.is_active
    if action == "reactivate_accounts":
        return account.is_active
    return AuditEvent.objects.filter(action="password_link", target_id=str(account.pk)).exists()


@pytest.mark.parametrize("action", ["deactivate_accounts", "reactivate_accounts", "issue_links"])
@pytest.mark.parametrize("actor", list(MAY_CHANGE))
def test_account_actions_in_the_admin_per_role_and_account(client, world, actor, action):
    client.force_login(_user(actor))
    for username in ACCOUNT_NAMES:
        if username == actor:
            continue  # changing the actor's own password or status would end their session
        _unusable(username)  # a lead may issue links only to accounts without a password
        if action == "reactivate_accounts":
            User.objects.filter(username=username).update(is_active=False)
        _act(client, action, _user(username))
        assert _changed(action, username) == (username in MAY_CHANGE[actor]), (actor, username)


@pytest.mark.parametrize("actor", list(MAY_CHANGE))
def test_account_services_per_role_and_account(world, actor):
    by = _user(actor)
    for username in ACCOUNT_NAMES:
        allowed = username in MAY_CHANGE[actor]
        _unusable(username)
        for change in (account_deactivate, account_reactivate, account_link_issue):
            account = _user(username)
            if allowed:
                change(account=account, by=by)
            else:
                with pytest.raises(AccountError):
                    change(account=account, by=by)
        assert _user(username).is_active


@pytest.mark.parametrize("actor", list(MAY_CHANGE))
def test_no_role_changes_an_accounts_email_in_the_admin(client, world, actor):
    client.force_login(_user(actor))
    for username in ACCOUNT_NAMES:
        account = _user(username)
        client.post(
            f"{ACCOUNTS}{account.pk}/change/",
            {"username": username, "email": "taken@example.org", "is_active": "on"},
        )
        assert _user(username).email == f"{username}@example.com", (actor, username)


# Adding an account to a project. Staff add anyone; bob adds ann (his already) and nora (in
# no project), but not sam, eve or dora (in dora's project) nor alice (staff).
MAY_ADD = {
    "alice": {"ann", "sam", "eve", "dora", "nora"},
    "bob": {"ann", "nora"},
    "ann": set(),
    "charlie": set(),
}


@pytest.mark.parametrize("actor", list(MAY_ADD))
def test_adding_members_through_the_api_per_role_and_account(api, world, actor):
    client = api(_user(actor))
    second = "/api/v1/projects/second/members/"
    for username in ACCOUNT_NAMES:
        if username == "alice":
            continue  # staff adding staff: not the point here
        response = client.post(second, {"username": username, "role": "annotator"})
        added = Membership.objects.filter(project=world["second"], user__username=username)
        if actor in ("ann", "charlie"):
            assert response.status_code == 404
        elif username in MAY_ADD[actor]:
            assert response.status_code == 201, (actor, username, response.json())
            assert added.exists()
        else:
            assert response.status_code == 400, (actor, username)
            assert response.json() == {"username": [NOT_ADDABLE]}
            assert not added.exists()


# The admin's action offers only the accounts the actor sees: bob's annotators (ann, sam).
ADD_ACTION = {"alice": {"ann", "sam", "eve", "dora", "nora"}, "bob": {"ann"}}


@pytest.mark.parametrize("actor", list(ADD_ACTION))
def test_adding_accounts_with_the_admin_action_per_account(client, world, actor):
    client.force_login(_user(actor))
    second = world["second"]
    for username in ACCOUNT_NAMES:
        account = _user(username)
        client.post(
            ACCOUNTS,
            {
                "action": "add_to_project",
                "_selected_action": [account.pk],
                "apply": "1",
                "project": second.pk,
            },
        )
        added = Membership.objects.filter(project=second, user=account).exists()
        assert added == (username in ADD_ACTION[actor]), (actor, username)


def test_the_add_action_says_why_it_refuses_an_account_of_another_project(client, world):
    client.force_login(_user("bob"))
    sam, ann = _user("sam"), _user("ann")
    response = client.post(
        ACCOUNTS,
        {
            "action": "add_to_project",
            "_selected_action": [ann.pk, sam.pk],
            "apply": "1",
            "project": world["second"].pk,
        },
        follow=True,
    )
    assert "Sam is also in a project you do not lead" in response.content.decode()
    # All or nothing: ann was not added either.
    assert not world["second"].memberships.filter(user__in=[ann, sam]).exists()
    with pytest.raises(AccountError, match="sam is also in a project you do not lead"):
        accounts_add_to_project(accounts=[sam], project=world["second"], by=_user("bob"))


# The takeover the issue describes, step by step, and the answers that do not enumerate.


def test_a_lead_cannot_take_over_another_projects_annotator_through_the_api(api, world):
    bob, eve = _user("bob"), _user("eve")
    response = api(bob).post(MEMBERS, {"username": "eve", "role": "annotator"})
    assert response.status_code == 400
    assert not Membership.objects.filter(project=world["demo"], user=eve).exists()
    with pytest.raises(AccountError):
        account_deactivate(account=eve, by=bob)
    with pytest.raises(AccountError):
        account_link_issue(account=eve, by=bob)
    assert _user("eve").is_active


def test_staff_may_share_an_account_and_then_no_single_lead_changes_it(api, client, world):
    alice, bob = _user("alice"), _user("bob")
    response = api(alice).post(MEMBERS, {"username": "eve", "role": "annotator"})
    assert response.status_code == 201
    client.force_login(bob)
    eve = _user("eve")
    assert ">eve</a>" in client.get(ACCOUNTS).content.decode()  # bob sees his annotator
    page = _act(client, "deactivate_accounts", eve).content.decode()
    assert "You cannot deactivate eve" in page
    page = _act(client, "issue_links", eve).content.decode()
    assert "You cannot manage eve" in page
    assert _user("eve").is_active
    assert not AuditEvent.objects.filter(target_id=str(eve.pk), actor=bob).exists()


def test_unknown_and_unaddable_usernames_get_the_same_answer(api, world):
    client = api(_user("bob"))
    answers = {
        username: client.post(MEMBERS, {"username": username, "role": "annotator"})
        for username in ("no-such-user", "eve", "dora", "alice")
    }
    bodies = {(r.status_code, r.content) for r in answers.values()}
    assert bodies == {(400, b'{"username":["' + NOT_ADDABLE.encode() + b'"]}')}


def test_the_admin_inline_answers_unknown_and_unaddable_alike(client, world):
    client.force_login(_user("bob"))
    project = world["demo"]
    for username in ("no-such-user", "eve", "alice"):
        data = _project_form(
            project,
            **{
                "memberships-TOTAL_FORMS": "1",
                "memberships-0-project": str(project.pk),
                "memberships-0-username": username,
                "memberships-0-role": "annotator",
            },
        )
        response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
        assert response.status_code == 200
        html = response.content.decode()
        assert f"No user named &#x27;{username}&#x27; that you can add." in html
        assert not project.memberships.filter(user__username=username).exists()


def test_renaming_an_inline_row_cannot_bring_in_another_projects_account(client, world):
    client.force_login(_user("bob"))
    project = world["demo"]
    ann = project.memberships.get(user__username="ann")
    data = _project_form(
        project,
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(ann.pk),
            "memberships-0-project": str(project.pk),
            "memberships-0-username": "eve",
            "memberships-0-role": "annotator",
        },
    )
    response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
    assert "No user named &#x27;eve&#x27; that you can add." in response.content.decode()
    assert not project.memberships.filter(user__username="eve").exists()
    assert project.memberships.filter(user__username="ann").exists()


def test_a_lead_adds_an_account_of_no_project_and_then_manages_it(api, world):
    bob = _user("bob")
    response = api(bob).post(MEMBERS, {"username": "nora", "role": "annotator"})
    assert response.status_code == 201
    account_deactivate(account=_user("nora"), by=bob)
    assert not _user("nora").is_active


# Leads and their own role.


def test_a_lead_cannot_demote_themself_through_the_api(api, world):
    bob = _user("bob")
    response = api(bob).post(MEMBERS, {"username": "bob", "role": "annotator"})
    assert response.status_code == 400
    assert "You cannot step down as a lead of Demo" in response.json()["detail"]
    assert world["demo"].memberships.get(user=bob).role == "lead"


def _bob_row(project: Project, **row: str) -> dict[str, str]:
    mine = project.memberships.get(user__username="bob")
    return _project_form(
        project,
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(mine.pk),
            "memberships-0-project": str(project.pk),
            "memberships-0-username": "bob",
            "memberships-0-role": "lead",
            **{f"memberships-0-{key}": value for key, value in row.items()},
        },
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"role": "annotator"}, "You cannot step down as a lead of Demo"),
        ({"DELETE": "on"}, "You cannot remove yourself from Demo"),
        ({"username": "ann"}, "You cannot remove yourself from Demo"),
    ],
)
def test_a_lead_cannot_demote_or_remove_themself_in_the_admin(client, world, row, message):
    client.force_login(_user("bob"))
    project = world["demo"]
    response = client.post(
        f"/admin/projects/project/{project.pk}/change/", _bob_row(project, **row)
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert project.memberships.get(user__username="bob").role == "lead"
    assert project.memberships.get(user__username="ann").role == "annotator"
    assert not AuditEvent.objects.filter(action__startswith="membership", actor__username="bob")


def test_the_services_refuse_a_leads_own_demotion_and_staff_may_do_it(world):
    bob, alice, demo = _user("bob"), _user("alice"), world["demo"]
    with pytest.raises(ProjectError, match="step down"):
        membership_add(project=demo, user=bob, role="annotator", by=bob)
    with pytest.raises(ProjectError, match="remove yourself"):
        membership_remove(project=demo, user=bob, by=bob)
    # Another lead of the project may demote them; staff may remove even the last lead.
    dora = _user("dora")
    membership_add(project=demo, user=dora, role="lead", by=alice)
    membership_add(project=demo, user=bob, role="annotator", by=dora)
    assert membership_remove(project=demo, user=dora, by=alice)
    assert not demo.memberships.filter(role="lead").exists()


def test_a_lead_acts_only_on_projects_they_lead(world):
    bob, eve = _user("bob"), _user("eve")
    with pytest.raises(ProjectError, match="You do not lead Other project"):
        membership_remove(project=world["other"], user=eve, by=bob)
    with pytest.raises(ProjectError, match="You do not lead Other project"):
        membership_add(project=world["other"], user=_user("nora"), role="annotator", by=bob)


@pytest.mark.parametrize(
    ("username", "role", "message"),
    [
        ("bob", "annotator", "You cannot step down as a lead of Fresh"),
        ("eve", "annotator", "No user named &#x27;eve&#x27; that you can add."),
    ],
)
def test_a_lead_creating_a_project_meets_the_same_rules(client, world, username, role, message):
    client.force_login(_user("bob"))
    data = _project_form(
        Project(name="Fresh"),
        slug="fresh",
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-username": username,
            "memberships-0-role": role,
        },
    )
    response = client.post("/admin/projects/project/add/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Project.objects.filter(slug="fresh").exists()
    data["memberships-0-username"] = "nora"
    assert client.post("/admin/projects/project/add/", data).status_code == 302
    fresh = Project.objects.get(slug="fresh")
    members = dict(fresh.memberships.values_list("user__username", "role"))
    assert members == {"bob": "lead", "nora": "annotator"}


def test_its_errors_say_their_http_status():
    """The accounts' errors are the project's ApplicationErrors (annotate.errors): a refusal is
    a 403, a bad CSV a 400 whose body names each line."""
    csv_error = AccountCsvError([CsvLineError(2, "duplicate")])
    assert (AccountError("no").status, TokenRefused("no").status, csv_error.status) == (
        403,
        403,
        400,
    )
    assert csv_error.as_dict() == {
        "detail": "1 error(s)",
        "errors": [{"line": 2, "error": "duplicate"}],
    }
