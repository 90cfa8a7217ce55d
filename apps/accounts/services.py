"""Annotator accounts, as leads manage them: created one at a time or from a CSV of emails, each
with a one-time link to set a password; added to projects; deactivated and reactivated."""

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotate.errors import BadRequest, Forbidden
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.judging.models import Assignment, AssignmentStatus
from apps.judging.queue import leases_reclaim_expired
from apps.projects.models import Membership, Project, Role
from apps.projects.selectors import projects_led_by
from apps.projects.services import ProjectError, member_addable, membership_add

logger = logging.getLogger(__name__)
Actor = User | AnonymousUser
MAX_CSV_ROWS = 5000


class AccountError(Forbidden):
    """A request about accounts that the actor may not make (an account or project not theirs
    to manage, no project of theirs named); the message is for the lead."""


@dataclass(frozen=True)
class CsvLineError:
    line: int
    error: str


class AccountCsvError(BadRequest):
    """A CSV of emails with errors: nothing was created. `errors` name their lines."""

    def __init__(self, errors: list[CsvLineError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "errors": [{"line": e.line, "error": e.error} for e in self.errors],
        }


def accounts_visible_to(user: Actor) -> QuerySet[User]:
    """The accounts a lead manages: annotators of the projects they lead (staff: every account
    that is not staff)."""
    if not user.is_authenticated or not user.is_active:
        return User.objects.none()
    if user.is_staff:
        return User.objects.filter(is_staff=False)
    return User.objects.filter(
        is_staff=False,
        memberships__role=Role.ANNOTATOR,
        memberships__project__in=projects_led_by(user).values("pk"),
    ).distinct()


def may_manage(actor: Actor, account: User) -> bool:
    """Whether `actor` may change `account`: deactivate or reactivate it, issue its
    set-password link (and so log in as it).

    Staff: any account but staff. A lead: an annotator of one of their projects who is neither
    staff nor a lead anywhere, nor a member of any project the lead does not lead: an account
    another lead also works with is not one lead's to block or take over.
    """
    if account.is_staff or account.pk == actor.pk:
        return False
    if actor.is_staff:
        return True
    if Membership.objects.filter(user=account, role=Role.LEAD).exists():
        return False
    led = projects_led_by(actor).values("pk")
    if Membership.objects.filter(user=account).exclude(project__in=led).exists():
        return False
    return accounts_visible_to(actor).filter(pk=account.pk).exists()


def set_password_link(account: User, *, base_url: str = "") -> str:
    """A link to set the account's password, valid once: setting the password (or logging in)
    changes what the token is computed from, so the link stops working. It also expires after
    PASSWORD_RESET_TIMEOUT seconds."""
    path = reverse(
        "password-set",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(account.pk)),
            "token": default_token_generator.make_token(account),
        },
    )
    return base_url.rstrip("/") + path


def _send_link(account: User, link: str) -> bool:
    """Mails the link when ACCOUNT_LINKS_BY_EMAIL is on and the account has an address."""
    if not settings.ACCOUNT_LINKS_BY_EMAIL or not account.email:
        return False
    try:
        send_mail(
            "Your annotate account",
            f"An account was made for you on annotate. Set your password here (the link works "
            f"once):\n\n{link}\n\nYour username is {account.get_username()}.",
            None,
            [account.email],
        )
    except OSError:
        logger.exception("could not mail the set-password link of %s", account.pk)
        return False
    return True


@dataclass(frozen=True)
class NewAccount:
    account: User
    link: str
    mailed: bool


def _or_none(projects: Iterable[Project]) -> list[Project | None]:
    """The projects, or [None]: an account's events are recorded once per project it is in,
    so that each project's leads see them, and once without a project if it is in none."""
    found: list[Project | None] = list(projects)
    return found or [None]


def _audit_account(
    by: Actor, action: AuditAction, account: User, details: dict[str, Any] | None = None
) -> None:
    """Records an action on an account once per project it is in (or once without one)."""
    in_projects = Project.objects.filter(memberships__user=account).order_by("pk")
    for project in _or_none(in_projects):
        audit_record(
            actor=by,
            action=action,
            project=project,
            target=account,
            details={"user": account.get_username(), **(details or {})},
        )


def _check_projects(actor: Actor, projects: Iterable[Project]) -> list[Project]:
    projects = list(projects)
    allowed = set(projects_led_by(actor).values_list("pk", flat=True))
    for project in projects:
        if project.pk not in allowed:
            raise AccountError(f"You do not lead {project}.")
    return projects


def _email_problem(email: str) -> str:
    try:
        validate_email(email)
    except ValidationError:
        return f"{email!r} is not an email address"
    return ""


def _taken(emails: list[str]) -> set[str]:
    query = Q()
    for email in emails:
        query |= Q(email__iexact=email) | Q(username__iexact=email)
    if not emails:
        return set()
    found = set()
    for username, email in User.objects.filter(query).values_list("username", "email"):
        found.update({username.lower(), email.lower()})
    return found & {email.lower() for email in emails}


def accounts_create(
    *, emails: list[str], projects: Iterable[Project], by: Actor, base_url: str = ""
) -> list[NewAccount]:
    """Creates one annotator account per email (the email is also the username), adds each to
    `projects` as annotator, and returns each with its one-time set-password link.

    All or nothing: a bad or taken address raises AccountCsvError, naming the position (1-based)
    of each problem, and nothing is created. A lead must name at least one of their projects:
    an account in none of them would be out of their reach at once.
    """
    projects = _check_projects(by, projects)
    if not by.is_staff and not projects:
        raise AccountError("Choose at least one of your projects to add the accounts to.")
    return _create(
        rows=[(index, email) for index, email in enumerate(emails, start=1)],
        projects=projects,
        by=by,
        base_url=base_url,
    )


def _create(
    *, rows: list[tuple[int, str]], projects: list[Project], by: Actor, base_url: str
) -> list[NewAccount]:
    errors: list[CsvLineError] = []
    first_line: dict[str, int] = {}
    for line, email in rows:
        if problem := _email_problem(email):
            errors.append(CsvLineError(line, problem))
        elif email.lower() in first_line:
            errors.append(
                CsvLineError(
                    line, f"duplicate: {email} is also on line {first_line[email.lower()]}"
                )
            )
        else:
            first_line[email.lower()] = line
    taken = _taken(list(first_line))
    for line, email in rows:
        if email.lower() in taken and first_line.get(email.lower()) == line:
            errors.append(CsvLineError(line, f"duplicate: {email} already has an account"))
    if not rows:
        errors.append(CsvLineError(0, "no email addresses"))
    if errors:
        raise AccountCsvError(sorted(errors, key=lambda e: e.line))
    created: list[User] = []
    with transaction.atomic():
        for _, email in rows:
            account = User(username=email, email=email)
            account.set_unusable_password()
            account.save()
            created.append(account)
            for project in projects:
                membership_add(project=project, user=account, role=Role.ANNOTATOR, by=by)
            for each in _or_none(projects):
                audit_record(
                    actor=by,
                    action=AuditAction.ACCOUNT_CREATED,
                    project=each,
                    target=account,
                    details={"email": email, "projects": [p.slug for p in projects]},
                )
    result = []
    for account in created:
        link = set_password_link(account, base_url=base_url)
        result.append(NewAccount(account, link, _send_link(account, link)))
    return result


def accounts_create_from_csv(
    *, data: bytes, projects: Iterable[Project], by: Actor, base_url: str = ""
) -> list[NewAccount]:
    """Accounts from a CSV of emails: one address a line, in the first column (other columns and
    a header line `email` are ignored; blank lines are skipped). Errors name their line; nothing
    is created when there is any."""
    projects = _check_projects(by, projects)
    if not by.is_staff and not projects:
        raise AccountError("Choose at least one of your projects to add the accounts to.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccountCsvError(
            [CsvLineError(0, f"the file is not UTF-8 text ({exc.reason})")]
        ) from None
    rows: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip():
            continue
        email = row[0].strip()
        if not rows and email.lower() == "email":
            continue  # the header
        rows.append((line, email))
        if len(rows) > MAX_CSV_ROWS:
            raise AccountCsvError(
                [CsvLineError(line, f"too many accounts: at most {MAX_CSV_ROWS} a file")]
            )
    return _create(rows=rows, projects=projects, by=by, base_url=base_url)


def accounts_add_to_project(*, accounts: Iterable[User], project: Project, by: Actor) -> int:
    """Adds accounts to one of the actor's projects as annotators; returns how many were new.

    All or nothing: an account that is also in a project the lead does not lead is staff's to
    add (see `member_addable`), and raises AccountError naming it.
    """
    _check_projects(by, [project])
    members = set(Membership.objects.filter(project=project).values_list("user_id", flat=True))
    new = [account for account in accounts if account.pk not in members]
    for account in new:
        if not member_addable(user=account, by=by):
            raise AccountError(
                f"{account.get_username()} is also in a project you do not lead: only staff "
                "can add them to another project."
            )
    with transaction.atomic():
        for account in new:
            try:
                membership_add(project=project, user=account, role=Role.ANNOTATOR, by=by)
            except ProjectError as exc:
                raise AccountError(str(exc)) from None
    return len(new)


def account_deactivate(*, account: User, by: Actor) -> int:
    """Deactivates an account: it can no longer log in or use its API token, and its open
    leases return to the pool at once. Returns how many leases were released."""
    if not may_manage(by, account):
        raise AccountError(f"You cannot deactivate {account.get_username()}.")
    now = timezone.now()
    with transaction.atomic():
        User.objects.filter(pk=account.pk).update(is_active=False)
        account.is_active = False
        # Expire the leases now, and let the reclaim (the one the sweep runs) give the slots back.
        leased_in = list(
            Assignment.objects.filter(annotator=account, status=AssignmentStatus.OPEN)
            .values_list("project_id", flat=True)
            .distinct()
        )
        released = Assignment.objects.filter(
            annotator=account, status=AssignmentStatus.OPEN
        ).update(expires_at=now)
        for project_id in leased_in:
            while leases_reclaim_expired(project_id=project_id, now=now):
                pass
        _audit_account(by, AuditAction.ACCOUNT_DEACTIVATED, account, {"leases_released": released})
    return released


def account_link_issue(*, account: User, by: Actor, base_url: str = "") -> NewAccount:
    """A new one-time set-password link, for an account whose password was never set."""
    if not may_manage(by, account):
        raise AccountError(f"You cannot manage {account.get_username()}.")
    if account.has_usable_password() and not by.is_staff:
        raise AccountError(
            f"{account.get_username()} has set a password already; only staff can issue a new link."
        )
    link = set_password_link(account, base_url=base_url)
    _audit_account(by, AuditAction.PASSWORD_LINK, account)
    return NewAccount(account, link, _send_link(account, link))


def account_reactivate(*, account: User, by: Actor) -> bool:
    """Lets a deactivated account log in and use its API token again. Nothing else comes back:
    its released leases stay released, and judgments invalidated meanwhile stay invalid.
    Returns False when the account was active already."""
    if not may_manage(by, account):
        raise AccountError(f"You cannot reactivate {account.get_username()}.")
    with transaction.atomic():
        changed = User.objects.filter(pk=account.pk, is_active=False).update(is_active=True)
        account.is_active = True
        if not changed:
            return False
        _audit_account(by, AuditAction.ACCOUNT_REACTIVATED, account)
    return True
