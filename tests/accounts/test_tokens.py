"""The API token page: a user makes their own token (shown once), sees that it exists, replaces
or revokes it; the token works against the API until then, and each change is audited."""

import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts.tokens import TokenRefused, api_token_create
from apps.audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

URL = "/accounts/api-token/"


def create(client: Client) -> str:
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    match = re.search(r'data-testid="token-key">([0-9a-f]{40})<', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def projects_with(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/projects/").status_code


def test_a_lead_creates_a_token_sees_it_once_and_it_works(client, project, bob):
    client.force_login(bob)
    page = client.get(URL).content.decode()
    assert "You have no API token." in page
    key = create(client)
    assert Token.objects.get(user=bob).key == key
    client_api = APIClient()
    client_api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client_api.get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == ["demo"]
    # Seen once: the next load shows that it exists, its date and its start, not the key.
    page = client.get(URL).content.decode()
    assert key not in page
    assert f"<code>{key[:4]}{'•' * 36}</code>" in page
    assert "You have a token, created " in page
    event = AuditEvent.objects.get(action=AuditAction.API_TOKEN_CREATED)
    assert event.actor == bob and event.details == {"replaced": False}
    assert key not in f"{event.target_repr} {event.details} {event.target_id}"


def test_a_new_token_replaces_the_old_one(client, project, bob):
    client.force_login(bob)
    old = create(client)
    new = create(client)
    assert old != new
    assert projects_with(old) == 401
    assert projects_with(new) == 200
    assert Token.objects.filter(user=bob).count() == 1
    assert list(
        AuditEvent.objects.filter(action=AuditAction.API_TOKEN_CREATED)
        .order_by("id")
        .values_list("details", flat=True)
    ) == [{"replaced": False}, {"replaced": True}]


def test_a_revoked_token_is_refused(client, project, bob):
    client.force_login(bob)
    key = create(client)
    response = client.post(URL, {"action": "revoke"})
    assert response.status_code == 200
    assert "Your API token is revoked" in response.content.decode()
    assert "You have no API token." in response.content.decode()
    assert projects_with(key) == 401
    assert not Token.objects.filter(user=bob).exists()
    event = AuditEvent.objects.get(action=AuditAction.API_TOKEN_REVOKED)
    assert event.actor == bob and event.target_repr == "bob"
    # Revoking nothing records nothing.
    client.post(URL, {"action": "revoke"})
    assert AuditEvent.objects.filter(action=AuditAction.API_TOKEN_REVOKED).count() == 1


def test_an_annotator_may_have_a_token_for_what_the_api_lets_them_do(
    client, project, batch, annotators
):
    """The API serves annotators (next, judgments, skips, undo), so the page does too."""
    client.force_login(annotators[0])
    key = create(client)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.post("/api/v1/projects/demo/assignments/next/").status_code == 200
    # ...and no more than their role allows.
    assert api.get("/api/v1/projects/demo/export/?format=judgments").status_code == 404


def test_staff_may_have_a_token(client, alice, project):
    client.force_login(alice)
    assert projects_with(create(client)) == 200


def test_a_user_in_no_project_is_refused(client, charlie, project):
    client.force_login(charlie)
    response = client.get(URL)
    assert response.status_code == 403
    assert "you belong to no project" in response.content.decode()
    assert client.post(URL, {"action": "create"}).status_code == 403
    assert not Token.objects.filter(user=charlie).exists()
    with pytest.raises(TokenRefused):
        api_token_create(user=charlie)
    assert not AuditEvent.objects.filter(action=AuditAction.API_TOKEN_CREATED).exists()


def test_a_deactivated_lead_is_refused_by_the_service(project, bob):
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    with pytest.raises(TokenRefused):
        api_token_create(user=bob)


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Token.objects.exists()


def test_post_only_with_csrf(project, bob):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(URL, {"action": "create"}).status_code == 403
    assert not Token.objects.filter(user=bob).exists()
    lax = Client()
    lax.force_login(bob)
    assert lax.put(URL, {"action": "create"}).status_code == 405
    assert lax.get(URL, {"action": "create"}).status_code == 200  # a GET changes nothing
    assert not Token.objects.filter(user=bob).exists()
    # With the form's token it goes through.
    page = client.get(URL).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert csrf
    response = client.post(URL, {"action": "create", "csrfmiddlewaretoken": csrf.group(1)})
    assert response.status_code == 200 and Token.objects.filter(user=bob).exists()


def test_an_unknown_action_is_refused_clearly(client, project, bob):
    client.force_login(bob)
    response = client.post(URL, {"action": "delete-everything"})
    assert response.status_code == 400
    assert "Unknown action" in response.content.decode()
    assert not Token.objects.filter(user=bob).exists()


def test_the_admin_user_menu_and_home_link_to_the_page(client, project, bob):
    client.force_login(bob)
    admin = client.get("/admin/").content.decode()
    assert f'<a href="{URL}">API token</a>' in admin
    assert "Log out" in admin  # Django's own links are still there
    assert f'href="{URL}"' in client.get("/").content.decode()
