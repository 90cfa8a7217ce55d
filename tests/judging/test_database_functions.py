"""Serving refuses queue functions of other code (apps.judging.queue.installed): the system
check, the WSGI, ASGI and worker start-up, and migrate, which must still run to fix them.

Each test that spoils a function does it inside its test's transaction (rolled back, DDL too)
and installs the functions again at its end, so that the other tests find them intact.
"""

import importlib
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from apps.judging.queue import installed
from tests.conftest import ON_POSTGRES

OTHER_FITS = """CREATE OR REPLACE FUNCTION annotate_fits(
    p_choice text, p_strength integer, p_graded boolean, p_allow_tie boolean,
    p_allow_both_bad boolean
) RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$ SELECT false $fn$"""


def run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture
def reinstalled(db: None) -> Iterator[None]:
    yield
    installed.functions_install()
    assert installed.functions_mismatch() == []


@pytest.fixture
def stale(reinstalled: None) -> None:
    """annotate_fits replaced by hand: what a deploy without migrate looks like to the check."""
    run(OTHER_FITS)


@pytest.mark.django_db
def test_the_installed_functions_pass_the_check() -> None:
    assert installed.check_queue_functions() == []
    installed.refuse_stale_functions()


@pytest.mark.django_db
def test_the_comparison_is_one_query_and_none_on_sqlite(django_assert_num_queries) -> None:
    # SQLite has no functions: there is nothing to compare, and nothing is read.
    with django_assert_num_queries(1 if ON_POSTGRES else 0):
        assert installed.check_queue_functions() == []


@pytest.mark.postgres
def test_a_body_changed_by_hand_is_an_error_that_says_to_migrate(stale: None) -> None:
    [error] = installed.check_queue_functions()
    assert error.id == "judging.E001"
    assert "annotate_fits was changed since it was installed" in error.msg
    assert "python manage.py migrate" in str(error.hint)


@pytest.mark.postgres
def test_functions_signed_by_other_code_are_an_error(reinstalled: None) -> None:
    run("COMMENT ON FUNCTION annotate_next IS 'annotate:0000'")
    [error] = installed.check_queue_functions()
    assert "annotate_next was installed by other code" in error.msg


@pytest.mark.postgres
def test_a_missing_function_is_an_error(reinstalled: None) -> None:
    run("DROP FUNCTION annotate_reclaim")
    [error] = installed.check_queue_functions()
    assert "annotate_reclaim is missing" in error.msg
    assert "annotate_pick" not in error.msg


@pytest.mark.postgres
def test_a_second_version_beside_the_first_is_an_error(reinstalled: None) -> None:
    run("CREATE FUNCTION annotate_fits(p text) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
    [error] = installed.check_queue_functions()
    assert "annotate_fits exists 2 times" in error.msg
    run("DROP FUNCTION annotate_fits(text)")  # migrate drops by name: it cannot choose one


@pytest.mark.postgres
def test_after_a_new_install_the_check_passes(stale: None) -> None:
    assert installed.check_queue_functions()
    installed.functions_install()
    assert installed.check_queue_functions() == []


@pytest.mark.postgres
def test_commands_refuse_but_migrate_runs_and_fixes_them(stale: None) -> None:
    with pytest.raises(SystemCheckError, match=r"judging\.E001"):
        call_command("check")
    call_command("migrate", skip_checks=False, verbosity=0)
    assert installed.check_queue_functions() == []
    call_command("check")


@pytest.mark.postgres
def test_start_up_refuses_with_the_migrate_message(stale: None) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"annotate_fits .*`python manage\.py migrate`"):
        installed.refuse_stale_functions()


@pytest.mark.postgres
def test_the_worker_does_not_start(stale: None) -> None:
    from annotate.celery import refuse_stale_database_functions

    with pytest.raises(SystemExit, match=r"python manage\.py migrate"):
        refuse_stale_database_functions(sender=None)


@pytest.mark.parametrize("module", ["annotate.wsgi", "annotate.asgi"])
def test_wsgi_and_asgi_start_up_compare_the_functions(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: object) -> None:
        raise ImproperlyConfigured("stale")

    monkeypatch.setattr(installed, "refuse_stale_functions", refuse)
    with pytest.raises(ImproperlyConfigured, match="stale"):
        importlib.reload(importlib.import_module(module))
