"""Password guessing through the real login form in a browser: after LOGIN_FAILURE_LIMIT
wrong passwords the right one is refused too, with a page that says why."""

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from tests.e2e.conftest import PageLog
from tests.e2e.helpers import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def submit(page: Any, base: str, username: str, password: str) -> Any:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    return navigation.value


def test_the_login_form_locks_a_guessed_username_out(
    live_server: Any, page: Any, page_log: PageLog
) -> None:
    User.objects.create_user("annie", password=PASSWORD)
    base = live_server.url
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert submit(page, base, "annie", f"guess-{n}").status == 200
        assert "didn't match" in page.inner_text("main")
    last = submit(page, base, "annie", "guess-last")
    assert last.status == 429
    response = submit(page, base, "annie", PASSWORD)
    assert response.status == 429
    assert page.inner_text("h1") == "Too many failed logins"
    assert "Try again in" in page.inner_text("[role=alert]")
    assert page.url == f"{base}/accounts/login/"  # not logged in: no redirect home
    assert not page_log.page_errors and not page_log.dialogs
