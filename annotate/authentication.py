"""The API's token authentication.

A module of its own: DRF imports the authentication classes while `rest_framework.views` loads,
so this one must not import it (annotate/api.py does).
"""

import functools

from django.contrib.auth.models import User
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from annotate.rows import columns, loaded_from_row

KEY_LENGTH = Token._meta.get_field("key").max_length or 40


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (`Authorization: Token <key>`), its token and user read with
    one hand-written statement: every API request pays for it, and DRF's ORM query
    (`select_related("user").get(key=...)`) cost about twice the Python. The same answers: 401
    "Invalid token." for an unknown key, "User inactive or deleted." for a deactivated
    account (and "Invalid token." for a key with a NUL, where DRF's query failed with a 500)."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        # No key is longer than the column, and none holds a NUL, which PostgreSQL refuses to
        # compare (a 500 where the answer is that the token is wrong): no statement for those.
        if len(key) > KEY_LENGTH or "\x00" in key:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        with connection.cursor() as cursor:
            cursor.execute(_token_sql(), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        split = len(Token._meta.concrete_fields)
        token = loaded_from_row(Token, row[:split])
        user = loaded_from_row(User, row[split:])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        return user, token


@functools.cache
def _token_sql() -> str:
    quote = connection.ops.quote_name
    # Only names from the models are formatted in; the key is bound.
    return (
        f"SELECT {', '.join(columns(Token, 't') + columns(User, 'u'))} "  # noqa: S608
        f"FROM {quote(Token._meta.db_table)} t "
        f"JOIN {quote(User._meta.db_table)} u ON u.id = t.user_id "
        "WHERE t.key = %s"
    )
