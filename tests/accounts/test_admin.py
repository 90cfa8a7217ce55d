"""The annotator accounts page of the admin (apps.accounts.admin): creating accounts one by one
or from a CSV, adding them to projects, deactivating, reactivating, set-password links; and its
old URL under /admin/projects/, which redirects."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.batches.models import Comparison
from apps.judging.models import AssignmentStatus
from apps.judging.queue import assignment_next
from apps.projects.models import Membership, Project
from apps.projects.services import membership_add, project_create
from tests.conftest import events

ACCOUNTS = "/admin/accounts/annotatoraccount/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("/admin/projects/annotatoraccount/", ACCOUNTS),
        ("/admin/projects/annotatoraccount/create/", ACCOUNTS + "create/"),
        ("/admin/projects/annotatoraccount/?project=3&q=ann", ACCOUNTS + "?project=3&q=ann"),
    ],
)
def test_it_sends_the_old_admin_urls_to_the_new_ones(client, old, new):
    response = client.get(old)
    assert (response.status_code, response["Location"]) == (308, new)


def test_it_shows_the_page_to_a_lead_at_its_new_url(client, project, bob):
    client.force_login(bob)
    assert client.get(ACCOUNTS).status_code == 200
    assert client.get(ACCOUNTS + "create/").status_code == 200


# Annotator accounts.


def create_accounts(client: Any, projects: list[Project], emails: str = "", file: Any = None):
    data: dict[str, Any] = {"emails": emails, "projects": [p.pk for p in projects]}
    if file is not None:
        data["file"] = file
    return client.post(f"{ACCOUNTS}create/", data)


def test_a_lead_creates_an_account_and_the_link_sets_its_password_once(lead, client, bob, project):
    response = create_accounts(lead, [project], "new.person@example.org\n")
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    account = User.objects.get(email="new.person@example.org")
    assert account.username == "new.person@example.org" and not account.has_usable_password()
    assert Membership.objects.get(user=account).project == project
    assert Membership.objects.get(user=account).role == "annotator"
    link = html.split('value="http://testserver/accounts/set-password/')[1].split('"')[0]
    link = f"/accounts/set-password/{link}"
    client.logout()
    form = client.get(link, follow=True)
    assert "Set your password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-long-Passphrase-9", "new_password2": "a-long-Passphrase-9"},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/set-password/done/"
    account.refresh_from_db()
    assert account.check_password("a-long-Passphrase-9")
    again = client.get(link, follow=True).content.decode()
    assert "does not work any more" in again
    # The login page, as the new annotator would (Client.login gives authenticate() no
    # request, which the login lockout needs).
    login = client.post(
        "/accounts/login/",
        {"username": "new.person@example.org", "password": "a-long-Passphrase-9"},
    )
    assert login.status_code == 302 and "_auth_user_id" in client.session
    [created] = events("account_created")
    assert created.actor == bob and created.project == project
    assert created.details == {"email": "new.person@example.org", "projects": ["demo"]}


def test_a_bad_csv_creates_nothing_and_names_its_lines(lead, project, annotators):
    csv = (
        b"email,name\n"
        b"good@example.org,Good\n"
        b"not-an-address,Bad\n"
        b"good@example.org,Again\n"
        b"ann@example.com,Exists\n"
        b"\n"
        b"other@example.org\n"
    )
    response = create_accounts(lead, [project], file=SimpleUploadedFile("a.csv", csv))
    html = response.content.decode()
    assert "No account was created: 3 problems in the file" in html
    assert "<td>3</td><td>&#x27;not-an-address&#x27; is not an email address" in html
    assert "<td>4</td><td>duplicate: good@example.org is also on line 2" in html
    assert "<td>5</td><td>duplicate: ann@example.com already has an account" in html
    assert not User.objects.filter(email__in=["good@example.org", "other@example.org"]).exists()
    assert not events("account_created")


def test_a_good_csv_creates_every_account_and_may_mail_the_links(lead, project, settings):
    settings.ACCOUNT_LINKS_BY_EMAIL = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    csv = b"email\none@example.org\r\ntwo@example.org,ignored\r\n"
    response = create_accounts(lead, [project], file=SimpleUploadedFile("a.csv", csv))
    html = response.content.decode()
    assert "2 account(s) created" in html and html.count("/accounts/set-password/") == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["one@example.org", "two@example.org"]
    assert "/accounts/set-password/" in mail.outbox[0].body
    assert project.memberships.filter(user__email__in=["one@example.org", "two@example.org"])
    assert len(events("account_created")) == 2


def test_a_lead_adds_accounts_only_to_their_projects(lead, project, other):
    response = create_accounts(lead, [], "x@example.org")
    assert "Choose at least one of your projects" in response.content.decode()
    response = create_accounts(lead, [other], "x@example.org")
    assert "Select a valid choice" in response.content.decode()
    assert not User.objects.filter(email="x@example.org").exists()
    assert "Other project" not in lead.get(f"{ACCOUNTS}create/").content.decode()


def test_leads_see_only_their_annotators_accounts(lead, client, alice, other):
    membership_add(project=other, user=User.objects.get(username="ann"), role="annotator")
    html = lead.get(ACCOUNTS).content.decode()
    assert "Demo (annotator)" in html
    assert "Other project" not in html  # ann's other project is not bob's business
    for name in ("ann", "ben", "cat"):
        assert f">{name}</a>" in html
    for name in ("eve", "dora", "alice", "bob"):
        assert f">{name}</a>" not in html
    eve = User.objects.get(username="eve")
    assert lead.get(f"{ACCOUNTS}{eve.pk}/change/").status_code == 302
    client.force_login(alice)
    html = client.get(ACCOUNTS).content.decode()
    for name in ("ann", "eve", "dora", "bob"):
        assert f">{name}</a>" in html
    assert ">alice</a>" not in html
    assert "Demo (annotator), Other project (annotator)" in html


def test_adding_accounts_to_a_project_asks_which_then_adds(lead, project, make_user, other):
    second = project_create(slug="second", name="Second")
    membership_add(project=second, user=User.objects.get(username="bob"), role="lead")
    ann = User.objects.get(username="ann")
    data = {"action": "add_to_project", "_selected_action": [ann.pk]}
    page = lead.post(ACCOUNTS, data).content.decode()
    assert "Add accounts to a project" in page and "Second" in page and "Other project" not in page
    lead.post(ACCOUNTS, {**data, "apply": "1", "project": other.pk})
    assert not Membership.objects.filter(project=other, user=ann).exists()
    response = lead.post(ACCOUNTS, {**data, "apply": "1", "project": second.pk}, follow=True)
    assert "Added 1 account(s) to Second" in response.content.decode()
    assert Membership.objects.get(project=second, user=ann).role == "annotator"
    [added] = events("membership_added", actor__username="bob")
    assert added.project == second and added.details["user"] == "ann"


def test_deactivating_an_annotator_releases_their_leases(lead, project, annotators, batch):
    ann = annotators[0]
    lease = assignment_next(project=project, annotator=ann)
    assert lease is not None
    response = lead.post(
        ACCOUNTS, {"action": "deactivate_accounts", "_selected_action": [ann.pk]}, follow=True
    )
    assert "Deactivated ann; 1 open lease(s) released" in response.content.decode()
    ann.refresh_from_db()
    lease.refresh_from_db()
    assert not ann.is_active
    assert lease.status == AssignmentStatus.EXPIRED
    assert Comparison.objects.get(pk=lease.comparison_id).lease_count == 0
    [event] = events("account_deactivated")
    assert event.details == {"user": "ann", "leases_released": 1} and event.project == project


def test_leads_cannot_deactivate_another_lead(lead, project, other, make_user):
    dora = User.objects.get(username="dora")
    membership_add(project=project, user=dora, role="annotator")
    response = lead.post(
        ACCOUNTS, {"action": "deactivate_accounts", "_selected_action": [dora.pk]}, follow=True
    )
    assert "You cannot deactivate dora" in response.content.decode()
    dora.refresh_from_db()
    assert dora.is_active and not events("account_deactivated")


def test_a_deactivated_annotator_is_reactivated_and_can_log_in_again(
    lead, project, annotators, batch, api
):
    ann = annotators[0]
    lease = assignment_next(project=project, annotator=ann)
    assert lease is not None
    lead.post(ACCOUNTS, {"action": "deactivate_accounts", "_selected_action": [ann.pk]})
    ann.refresh_from_db()
    assert not ann.is_active
    assert api(ann).post("/api/v1/projects/demo/assignments/next/").status_code in (401, 403)
    data = {"action": "reactivate_accounts", "_selected_action": [ann.pk]}
    response = lead.post(ACCOUNTS, data, follow=True)
    assert "Reactivated ann: they can log in again" in response.content.decode()
    ann.refresh_from_db()
    lease.refresh_from_db()
    assert ann.is_active
    assert lease.status == AssignmentStatus.EXPIRED  # what was released stays released
    assert api(ann).post("/api/v1/projects/demo/assignments/next/").status_code == 200
    [event] = events("account_reactivated")
    assert event.details == {"user": "ann"} and event.project == project
    # Again: nothing to do, said so, and not audited twice.
    response = lead.post(ACCOUNTS, data, follow=True)
    assert "The account ann is active already" in response.content.decode()
    assert len(events("account_reactivated")) == 1


def test_leads_cannot_reactivate_another_lead_or_an_outsider(lead, project, other):
    dora = User.objects.get(username="dora")
    membership_add(project=project, user=dora, role="annotator")
    eve = User.objects.get(username="eve")  # an annotator of dora's project only
    User.objects.filter(pk__in=[dora.pk, eve.pk]).update(is_active=False)
    response = lead.post(
        ACCOUNTS, {"action": "reactivate_accounts", "_selected_action": [dora.pk]}, follow=True
    )
    assert "You cannot reactivate dora" in response.content.decode()
    # eve is not in bob's list at all: selecting her id changes nothing.
    lead.post(ACCOUNTS, {"action": "reactivate_accounts", "_selected_action": [eve.pk]})
    dora.refresh_from_db()
    eve.refresh_from_db()
    assert not dora.is_active and not eve.is_active
    assert not events("account_reactivated")


def test_new_links_only_for_accounts_without_a_password(lead, project, annotators):
    fresh = User.objects.create(username="fresh@example.org", email="fresh@example.org")
    fresh.set_unusable_password()
    fresh.save()
    membership_add(project=project, user=fresh, role="annotator")
    ann = annotators[0]  # has a password
    response = lead.post(
        ACCOUNTS, {"action": "issue_links", "_selected_action": [fresh.pk, ann.pk]}, follow=True
    )
    html = response.content.decode()
    assert "Set-password links" in html and html.count("/accounts/set-password/") == 1
    assert "Ann has set a password already" in html
    assert [e.details["user"] for e in events("password_link")] == ["fresh@example.org"]


def test_annotators_never_reach_the_account_pages(client, annotators, project):
    client.force_login(annotators[0])
    for url in (ACCOUNTS, f"{ACCOUNTS}create/", "/admin/audit/auditevent/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
