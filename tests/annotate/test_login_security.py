"""Password guessing: every door that takes a password locks a username out, from one client
address, after LOGIN_FAILURE_LIMIT wrong passwords in a row, for LOGIN_COOLOFF_MINUTES.

Real login requests through Django's test client; the attempts are django-axes' rows in the
database, so each test starts with none (the test's transaction is rolled back).
"""

import base64
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

PASSWORD = "pw-for-tests"  # tests/conftest.py's make_user
ANNOTATOR_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def attempt(path: str, username: str, password: str, address: str = "10.0.0.1", **extra):
    client = Client(REMOTE_ADDR=address, **extra)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", [ANNOTATOR_LOGIN, ADMIN_LOGIN], ids=["annotator", "admin"])
def test_forty_wrong_passwords_lock_the_right_one_out(alice, path):
    statuses = [attempt(path, "alice", f"guess-{n}")[1].status_code for n in range(40)]
    limit = settings.AXES_FAILURE_LIMIT
    # The form answers the first wrong ones; from the limit on, the lockout page.
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert statuses[limit - 1 :] == [429] * (40 - limit + 1)
    client, response = attempt(path, "alice", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    body = response.content.decode()
    assert "Too many failed logins" in body
    assert f"{settings.LOGIN_COOLOFF_MINUTES} minutes" in body
    assert response["Retry-After"] == str(settings.LOGIN_COOLOFF_MINUTES * 60)


@pytest.mark.parametrize("path", [ANNOTATOR_LOGIN, ADMIN_LOGIN], ids=["annotator", "admin"])
def test_a_few_typos_do_not_lock_and_a_success_starts_the_count_again(alice, path):
    limit = settings.AXES_FAILURE_LIMIT
    for _round in range(2):
        for n in range(limit - 1):
            assert attempt(path, "alice", f"typo-{n}")[1].status_code == 200
        client, response = attempt(path, "alice", PASSWORD)
        assert response.status_code == 302 and logged_in(client)


def test_the_lock_holds_one_username_from_one_address_only(alice, bob):
    """An attacker guessing alice's password locks alice out from the attacker's address, not
    from everywhere: alice, elsewhere, still logs in (else anyone could lock any user out), and
    bob, from the attacker's own address, too."""
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(ANNOTATOR_LOGIN, "alice", f"guess-{n}", address="203.0.113.9")
    assert attempt(ANNOTATOR_LOGIN, "alice", PASSWORD, address="203.0.113.9")[1].status_code == 429
    client, response = attempt(ANNOTATOR_LOGIN, "alice", PASSWORD, address="198.51.100.7")
    assert response.status_code == 302 and logged_in(client)
    client, response = attempt(ANNOTATOR_LOGIN, "bob", PASSWORD, address="203.0.113.9")
    assert response.status_code == 302 and logged_in(client)


def test_the_lock_ends_after_the_cool_off(alice):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(ANNOTATOR_LOGIN, "alice", f"guess-{n}")
    assert attempt(ANNOTATOR_LOGIN, "alice", PASSWORD)[1].status_code == 429
    from axes.models import AccessAttempt

    # The attempts age as they would in LOGIN_COOLOFF_MINUTES of waiting.
    earlier = timezone.now() - timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES, seconds=1)
    assert AccessAttempt.objects.update(attempt_time=earlier) == 1
    client, response = attempt(ANNOTATOR_LOGIN, "alice", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_the_limit_and_the_cool_off_follow_the_settings(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    statuses = [attempt(ADMIN_LOGIN, "alice", f"guess-{n}")[1].status_code for n in range(3)]
    assert statuses == [200, 200, 429]


def test_a_forged_forwarded_for_header_does_not_reset_the_count(alice):
    """Without a trusted proxy (TRUSTED_PROXY_COUNT=0) the address is the connection's:
    a client that names a new X-Forwarded-For each time is still one client."""
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(ANNOTATOR_LOGIN, "alice", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    _client, response = attempt(
        ANNOTATOR_LOGIN, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.200"
    )
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_client_is_the_address_it_forwarded(alice, settings):
    """With TRUSTED_PROXY_COUNT=1 every request comes from the proxy's address; the client is
    the last address of X-Forwarded-For (the one the proxy appended), whatever the client put
    before it."""
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "172.18.0.5"
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(
            ANNOTATOR_LOGIN,
            "alice",
            f"guess-{n}",
            address=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9",
        )
    locked = attempt(
        ANNOTATOR_LOGIN, "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9"
    )[1]
    assert locked.status_code == 429
    client, response = attempt(
        ANNOTATOR_LOGIN, "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert response.status_code == 302 and logged_in(client)
    from axes.models import AccessAttempt

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}


def test_a_json_client_gets_json(alice):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(ADMIN_LOGIN, "alice", f"guess-{n}")
    _client, response = attempt(ADMIN_LOGIN, "alice", PASSWORD, HTTP_ACCEPT="application/json")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "Too many failed logins" in body["detail"]
    assert body["retry_after_seconds"] == settings.LOGIN_COOLOFF_MINUTES * 60


def test_the_api_takes_no_password_at_all(alice, annotators):
    """The API authenticates by token (made on the API token page, signed in, or with
    `manage.py drf_create_token`) or the browser's session: no API door takes a password, so
    none can be guessed through it."""
    credentials = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code in (401, 403)
    from django.urls import get_resolver

    names = {str(name) for name in get_resolver().reverse_dict if isinstance(name, str)}
    # The one page about tokens makes one for the user signed in with the session (the login
    # form's lockout guards that): it takes no password, with or without Basic credentials.
    assert {name for name in names if "token" in name.lower()} == {"api-token"}, names
    response = Client().post(
        "/accounts/api-token/",
        {"action": "create", "username": "alice", "password": PASSWORD},
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )
    assert response.status_code == 302 and "/login/" in response["Location"]
    from rest_framework.authtoken.models import Token

    assert not Token.objects.exists()
