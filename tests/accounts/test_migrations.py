"""The AnnotatorAccount proxy moved from the projects app to the accounts app: its content type
moves with it, and with it every grant of its permissions and every admin log entry about it."""

import importlib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection

MOVE = importlib.import_module("apps.accounts.migrations.0001_initial")
MODEL = "annotatoraccount"


@pytest.fixture(autouse=True)
def _fresh_content_types() -> Iterator[None]:
    ContentType.objects.clear_cache()
    yield
    ContentType.objects.clear_cache()


def _move(source: str, target: str) -> None:
    # The function reads only the editor's connection: no schema is changed.
    editor = SimpleNamespace(connection=connection)
    MOVE.content_type_move(apps, editor, source=source, target=target)


def _grants(user: User, group: Group) -> tuple[set[str], set[str]]:
    fresh = User.objects.get(pk=user.pk)
    return fresh.get_all_permissions(), {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()
    }


@pytest.mark.django_db
def test_it_carries_an_old_databases_grants_to_the_accounts_app(make_user):
    """A database migrated before the move has the content type under `projects`."""
    ContentType.objects.filter(app_label="accounts", model=MODEL).update(app_label="projects")
    view = Permission.objects.get(content_type__app_label="projects", codename="view_" + MODEL)
    user, group = make_user("lena"), Group.objects.create(name="account viewers")
    user.user_permissions.add(view)
    group.permissions.add(view)
    old = ContentType.objects.get(app_label="projects", model=MODEL)

    _move("projects", "accounts")

    moved = ContentType.objects.get(pk=old.pk)  # the same row: nothing pointing at it breaks
    assert (moved.app_label, moved.model) == ("accounts", MODEL)
    assert not ContentType.objects.filter(app_label="projects", model=MODEL).exists()
    assert _grants(user, group) == ({"accounts.view_" + MODEL}, {"accounts.view_" + MODEL})


@pytest.mark.django_db
def test_when_both_apps_have_the_content_type_it_merges_the_grants_and_log(make_user):
    new = ContentType.objects.get(app_label="accounts", model=MODEL)
    old = ContentType.objects.create(app_label="projects", model=MODEL)
    change = Permission.objects.create(
        content_type=old, codename="change_" + MODEL, name="Can change annotator account"
    )
    odd = Permission.objects.create(content_type=old, codename="audit_" + MODEL, name="Odd")
    user, group = make_user("lena"), Group.objects.create(name="account editors")
    user.user_permissions.add(change, odd)
    group.permissions.add(change)
    entry = LogEntry.objects.create(
        user=user, content_type=old, object_id="1", object_repr="x", action_flag=CHANGE
    )

    _move("projects", "accounts")

    assert not ContentType.objects.filter(pk=old.pk).exists()
    assert _grants(user, group) == (
        {"accounts.change_" + MODEL, "accounts.audit_" + MODEL},
        {"accounts.change_" + MODEL},
    )
    assert LogEntry.objects.get(pk=entry.pk).content_type_id == new.pk


@pytest.mark.django_db
def test_a_new_database_has_nothing_to_move_and_the_reverse_moves_it_back():
    _move("projects", "accounts")  # nothing under projects: nothing happens
    new = ContentType.objects.get(app_label="accounts", model=MODEL)

    _move("accounts", "projects")

    assert ContentType.objects.get(pk=new.pk).app_label == "projects"
