"""The API's token authentication (annotate.authentication): one statement, DRF's answers."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.authentication import TokenAuthentication

pytestmark = pytest.mark.django_db


def client_with(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def test_a_token_gives_its_user_and_itself_as_the_orm_reads_them(bob):
    token = Token.objects.create(user=bob)
    bob.first_name, bob.email = "Bob ü", "bob@example.org"
    bob.save()
    with CaptureQueriesContext(connection) as captured:
        user, found = TokenAuthentication().authenticate_credentials(token.key)
    assert len(captured) == 1
    stored = Token.objects.select_related("user").get(key=token.key)
    for model, mine, theirs in ((Token, found, stored), (User, user, stored.user)):
        for field in model._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
    assert found.user is user and not user.get_deferred_fields()


def test_the_api_answers_to_a_token(bob, project):
    token = Token.objects.create(user=bob)
    client = client_with(f"Token {token.key}")
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["username"] == bob.username


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token 0123456789012345678901234567890123456789", "Invalid token."),
        ("Token '||(SELECT(key)FROM(authtoken_token))||'", "Invalid token."),
        ("Token abc\x00def", "Invalid token."),
        ("Token " + "f" * 5000, "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
    ],
)
def test_a_bad_token_is_a_401_naming_why(bob, header, detail):
    Token.objects.create(user=bob)
    response = client_with(header).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["detail"] == detail
    assert response["WWW-Authenticate"] == "Token"


def test_a_deactivated_users_token_is_refused(bob):
    token = Token.objects.create(user=bob)
    User.objects.filter(pk=bob.pk).update(is_active=False)
    response = client_with(f"Token {token.key}").get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


def test_a_deleted_token_stops_working_at_once(bob):
    token = Token.objects.create(user=bob)
    client = client_with(f"Token {token.key}")
    assert client.get("/api/v1/me/").status_code == 200
    token.delete()
    assert client.get("/api/v1/me/").status_code == 401
