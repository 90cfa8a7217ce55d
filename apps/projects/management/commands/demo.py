"""`manage.py demo`: seeds a project, its logins and a batch of prompts to try the app with.

Running it again changes nothing: existing users keep their passwords (unless
`--reset-passwords`), an existing `demo` project keeps its settings, and the demo batch is
imported only while the project has no batch at all.

The demo logins, printed at the end of every run:

    login         password              role
    admin         demo-admin-pass       staff superuser (admin site)
    lead          demo-lead-pass        lead of the demo project
    annotator1-3  demo-annotator-pass   annotators in the demo project

These passwords are public. Never run this command against a database that real people use.
"""

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotate.settings import DEFAULT_SECRET_KEY
from apps.batches.import_format import ImportFormatError
from apps.batches.models import Batch
from apps.batches.services import batch_import
from apps.projects.models import Project, Role
from apps.projects.services import membership_add, project_create

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "demo.jsonl"
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"

PROJECT_SLUG = "demo"
PROJECT_NAME = "Demo: chat assistant preferences"
PROJECT_OVERLAP = 3
BATCH_NAME = "demo"

GUIDELINES = """\
## What you are doing

Each task shows a prompt (a single question, or a whole conversation with an assistant) and two
responses written by different models. Decide which response a thoughtful user would rather
receive. Read the whole prompt first: in a conversation, the response must fit everything said
so far, including any system prompt.

## How to judge

1. **Correctness first.** A response with a factual error, wrong code or a wrong number loses to
   a correct one, however well it is written. Check arithmetic and code when you can.
2. **Then helpfulness.** Does it answer what was asked, completely, at the right length? Prefer
   a short correct answer to a long padded one.
3. **Needless refusals are bad answers.** Refusing a harmless request (sharpening a kitchen
   knife, stopping a hung process) is worse than a reasonable attempt.
4. **Then clarity and tone.** Good formatting (lists, tables, code blocks) helps only when it
   makes the answer easier to use.

## Ties and "both bad"

Choose **tie** when the two are genuinely equally good or differ only in taste. Choose **both
bad** when neither response is acceptable, for example both are wrong or both refuse. Don't use
either just to go faster: a close call is still worth a choice.

Some responses contain raw HTML or script tags. They are shown as plain text on purpose; judge
them as text. More on preference data: [Wikipedia on RLHF](https://en.wikipedia.org/wiki/Reinforcement_learning_from_human_feedback).
"""


def _creator(users: dict[str, User]) -> User | None:
    """Who the audit log says created the demo projects: the demo's admin, if it is staff
    (a creator who is not staff would become the project's lead); otherwise the system.
    Memberships are added by the system (no actor)."""
    admin = users["admin"]
    return admin if admin.is_staff else None


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str  # as printed in the table
    superuser: bool = False
    project_role: str | None = None


# Documented, public demo passwords: the whole point is that everybody knows them.
ADMIN_PASSWORD = "demo-admin-pass"  # noqa: S105
LEAD_PASSWORD = "demo-lead-pass"  # noqa: S105
ANNOTATOR_PASSWORD = "demo-annotator-pass"  # noqa: S105

LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin("admin", ADMIN_PASSWORD, "staff superuser (admin site)", superuser=True),
    DemoLogin("lead", LEAD_PASSWORD, "lead of the demo projects", project_role=Role.LEAD),
    *(
        DemoLogin(
            f"annotator{n}",
            ANNOTATOR_PASSWORD,
            "annotator in the demo projects",
            project_role=Role.ANNOTATOR,
        )
        for n in range(1, 4)
    ),
)


@dataclass(frozen=True)
class ExtraProject:
    """A further demo project on the same prompts, to show another judgment scheme."""

    slug: str
    name: str
    settings: dict[str, Any]
    min_candidates: int = 2  # prompts with fewer responses are left out


EXTRA_PROJECTS = (
    ExtraProject(
        "demo-graded",
        "Demo: graded, with criteria",
        {
            "scheme": "graded",
            "criteria": [
                {"name": "helpfulness", "description": "Does it do what the user asked?"},
                {"name": "harmlessness", "description": "Could it hurt anyone?"},
                {"name": "honesty", "description": "Is every claim true, and is doubt said?"},
            ],
            "flags": ["unsafe content", "factual error", "prompt unclear"],
            "rationale": "optional",
        },
    ),
    ExtraProject(
        "demo-ranked",
        "Demo: rank all the responses",
        {"scheme": "listwise", "flags": ["factual error"]},
        min_candidates=3,
    ),
)


@dataclass
class SeedResult:
    kept_passwords: list[str]
    notes: list[str]
    project_created: bool
    batch: Batch | None  # the batch imported by this run, if any
    extras: list[str] = field(default_factory=list)  # a line per further demo project


@contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """With --quiet, hides the import's own log lines too (warnings and errors still show)."""
    logger = logging.getLogger("apps.batches")
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class Command(BaseCommand):
    help = (
        "Seed a demo project with logins and about 30 prompts to judge. Safe to run again: it "
        "creates nothing twice and keeps existing passwords. Never use on a real database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="print nothing")
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="set the demo passwords on demo users that already exist with other ones",
        )
        parser.add_argument(
            "--base-url",
            default=DEFAULT_BASE_URL,
            help=f"the address printed for the app (default: {DEFAULT_BASE_URL})",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="seed even where SECRET_KEY is set (the demo passwords are public)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A configured SECRET_KEY means a real deployment, where public passwords do not belong.
        if settings.SECRET_KEY != DEFAULT_SECRET_KEY and not options["force"]:
            raise CommandError(
                "SECRET_KEY is set: this looks like a real deployment, and the demo logins have "
                "public passwords. Use --force to seed anyway."
            )
        if not DEMO_FILE.is_file():
            raise CommandError(f"The demo data is missing: {DEMO_FILE}")
        with _silenced(bool(options["quiet"])), transaction.atomic():
            result = self._seed(reset_passwords=bool(options["reset_passwords"]))
        if not options["quiet"]:
            self._report(result, base_url=str(options["base_url"]))

    def _seed(self, *, reset_passwords: bool) -> SeedResult:
        users: dict[str, User] = {}
        kept: list[str] = []
        notes: list[str] = []
        for login in LOGINS:
            user, password_kept = self._user(login, reset_password=reset_passwords)
            users[login.username] = user
            if password_kept:
                kept.append(login.username)
            if login.superuser and not (user.is_staff and user.is_superuser):
                notes.append(
                    f"User {login.username!r} already exists and is not a staff superuser; "
                    "it was left as it is."
                )
            if not user.is_active:
                notes.append(f"User {login.username!r} exists but is inactive; it cannot log in.")

        project = Project.objects.filter(slug=PROJECT_SLUG).first()
        project_created = project is None
        if project is None:
            project = project_create(
                slug=PROJECT_SLUG,
                name=PROJECT_NAME,
                created_by=_creator(users),
                overlap=PROJECT_OVERLAP,
                allow_tie=True,
                allow_both_bad=True,
                guidelines=GUIDELINES,
            )
        for login in LOGINS:
            if login.project_role is not None:
                membership_add(project=project, user=users[login.username], role=login.project_role)

        batch = None
        if not project.batches.exists():
            batch = self._import(project, created_by=users["lead"])
        extras = [self._seed_extra(extra, users) for extra in EXTRA_PROJECTS]
        return SeedResult(
            kept_passwords=kept,
            notes=notes,
            project_created=project_created,
            batch=batch,
            extras=extras,
        )

    def _seed_extra(self, extra: ExtraProject, users: dict[str, User]) -> str:
        """Creates the project (same members, same guidelines) and imports the demo prompts with
        enough responses for its scheme; leaves an existing one alone. Returns its report line."""
        project = Project.objects.filter(slug=extra.slug).first()
        state = "already there"
        if project is None:
            state = "created"
            project = project_create(
                slug=extra.slug,
                name=extra.name,
                created_by=_creator(users),
                overlap=PROJECT_OVERLAP,
                guidelines=GUIDELINES,
                **extra.settings,
            )
        for login in LOGINS:
            if login.project_role is not None:
                membership_add(project=project, user=users[login.username], role=login.project_role)
        if not project.batches.exists():
            lines = [
                line
                for line in DEMO_FILE.read_text(encoding="utf-8").splitlines()
                if line.strip() and len(json.loads(line)["candidates"]) >= extra.min_candidates
            ]
            self._import(project, created_by=users["lead"], data="\n".join(lines).encode())
        return (
            f"Project {project.name!r} (slug {project.slug!r}, {extra.settings['scheme']}, "
            f"{state}): {project.prompts.count()} prompts, "
            f"{project.comparisons.count()} comparisons."
        )

    def _user(self, login: DemoLogin, *, reset_password: bool) -> tuple[User, bool]:
        """The demo user, created if missing, and whether it keeps a password of its own."""
        model = get_user_model()
        user = model.objects.filter(username=login.username).first()
        if user is None:
            email = f"{login.username}@example.com"
            if login.superuser:
                user = model.objects.create_superuser(login.username, email, login.password)
            else:
                user = model.objects.create_user(login.username, email, login.password)
            return user, False
        if user.check_password(login.password):
            return user, False
        if reset_password:
            user.set_password(login.password)
            user.save(update_fields=["password"])
            return user, False
        return user, True

    def _import(self, project: Project, *, created_by: User, data: bytes | None = None) -> Batch:
        data = DEMO_FILE.read_bytes() if data is None else data
        try:
            return batch_import(
                project=project,
                source=io.BytesIO(data),
                size=len(data),
                name=BATCH_NAME,
                created_by=created_by,
                background=False,
            )
        except ImportFormatError as exc:
            details = "; ".join(
                f"line {error.line}: {error.error}" if error.line else error.error
                for error in exc.errors[:5]
            )
            raise CommandError(f"The demo data could not be imported: {details}") from None

    def _report(self, result: SeedResult, *, base_url: str) -> None:
        base = base_url.rstrip("/") + "/"
        project = Project.objects.get(slug=PROJECT_SLUG)
        write = self.stdout.write
        write(self.style.SUCCESS("The demo is ready."))
        write(f"  App:    {base}")
        write(f"  Admin:  {base}admin/")
        write("")
        rows = [("login", "password", "role")]
        for login in LOGINS:
            password = (
                "(its own, kept)" if login.username in result.kept_passwords else login.password
            )
            rows.append((login.username, password, login.role))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for n, (username, password, role) in enumerate(rows):
            write(f"  {username:<{widths[0]}}  {password:<{widths[1]}}  {role}")
            if n == 0:
                write("  " + "  ".join("-" * width for width in widths))
        write("")
        prompts = project.prompts.count()
        comparisons = project.comparisons.count()
        state = "created" if result.project_created else "already there"
        write(
            f"Project {project.name!r} (slug {project.slug!r}, {state}): {prompts} prompts, "
            f"{comparisons} comparisons."
        )
        if result.batch is None:
            write(f"The project already has a batch; {DEMO_FILE.name} was not imported again.")
        else:
            write(f"Imported {DEMO_FILE.name} as batch {result.batch.name!r}.")
        for line in result.extras:
            write(line)
        for note in result.notes:
            write(self.style.WARNING(note))
        if result.kept_passwords:
            names = ", ".join(result.kept_passwords)
            write(
                self.style.WARNING(
                    f"Kept the existing passwords of {names}; run with --reset-passwords to set "
                    "the demo passwords."
                )
            )
