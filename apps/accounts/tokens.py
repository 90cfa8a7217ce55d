"""API tokens that users make for themselves on their token page (`/accounts/api-token/`).

A user holds at most one token (DRF's Token is one per user). Making one replaces the one
before, which stops working at once; revoking deletes it. Both are recorded in the audit log,
never with the key: the key is shown once, to its owner, in the answer to the request that
made it.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotate.errors import Forbidden
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.projects.models import Membership

# How much of a key the page shows once it was made: the rest is masked.
SHOWN_CHARACTERS = 4


class TokenRefused(Forbidden):
    """This user may not hold an API token."""


@dataclass(frozen=True)
class TokenInfo:
    """What the page shows of an existing token: never the key itself."""

    created: datetime
    masked: str


def api_token_allowed(user: User | AnonymousUser) -> bool:
    """Whether the user may make an API token: staff, and members of a project (leads and
    annotators: the API serves both, each to what their role allows). Not a user who belongs
    to no project, whose token could reach nothing."""
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or Membership.objects.filter(user_id=user.pk).exists())


def masked(key: str) -> str:
    return key[:SHOWN_CHARACTERS] + "•" * (len(key) - SHOWN_CHARACTERS)


def api_token_info(*, user: User) -> TokenInfo | None:
    token = Token.objects.filter(user=user).first()
    if token is None:
        return None
    return TokenInfo(created=token.created, masked=masked(token.key))


def api_token_create(*, user: User | AnonymousUser) -> str:
    """Makes the user a new API token, replacing theirs if they have one; returns its key."""
    if not isinstance(user, User) or not api_token_allowed(user):
        raise TokenRefused("Only staff and members of a project may have an API token.")
    with transaction.atomic():
        # Locks the user's row, so that two requests at once leave one token, not an error.
        User.objects.select_for_update().filter(pk=user.pk).first()
        replaced, _ = Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)
        audit_record(
            actor=user,
            action=AuditAction.API_TOKEN_CREATED,
            target=user,
            details={"replaced": bool(replaced)},
        )
    key: str = token.key
    return key


def api_token_revoke(*, user: User | AnonymousUser) -> bool:
    """Deletes the user's API token; False when they had none (nothing is recorded then)."""
    if not isinstance(user, User) or not user.is_authenticated:
        raise TokenRefused("Log in to revoke your API token.")
    with transaction.atomic():
        deleted, _ = Token.objects.filter(user=user).delete()
        if deleted:
            audit_record(actor=user, action=AuditAction.API_TOKEN_REVOKED, target=user)
    return bool(deleted)
