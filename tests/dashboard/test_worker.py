"""A large project's first dashboard view through a REAL Celery worker, on PostgreSQL and Redis:
the page asks the worker, which computes the figures into the shared cache, and a later poll
shows them. The worker is tests/judging/test_worker.py's (a subprocess on a queue of its own)."""

import re
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from apps.batches.models import Comparison
from apps.dashboard import services
from apps.dashboard.services import figures_cached
from apps.projects.models import Project
from tests.agreement.test_stats import vote
from tests.conftest import prompt_line
from tests.workers import Worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://..."),
]

TIMEOUT = 60


def test_a_cold_page_asks_the_worker_and_a_later_poll_shows_the_figures(
    via_worker: Worker,
    settings: Any,
    project: Project,
    bob: User,
    annotators: list[User],
    import_rows: Any,
) -> None:
    import_rows(prompt_line("p-1", n=3))
    for comparison in Comparison.objects.order_by("id")[:2]:
        for user in annotators:
            vote(project, user, comparison, "a")
    # This worker shares the Redis of other tests' workers: leave only this project's keys.
    keys = [services._key(project.pk), services._lock_key(project.pk)]
    cache.delete_many([*keys, services._asked_key(project.pk)])
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 5
    client = Client()
    client.force_login(bob)

    html = client.get("/lead/p/demo/").content.decode()
    assert "Computing this project's figures (about 6 judgments)" in html
    assert 'hx-trigger="every 3s"' in html

    deadline = time.monotonic() + TIMEOUT
    while True:
        fragment = client.get("/lead/p/demo/figures/").content.decode()
        if "Computing" not in fragment:
            break
        via_worker.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"no figures after {TIMEOUT} s:\n{via_worker.log()}")
        time.sleep(0.25)
    assert re.search(r'data-testid="total-judgments">6<', fragment)
    assert 'hx-trigger="every 30s"' in fragment
    via_worker.wait_for_log("succeeded", timeout=TIMEOUT)  # logged just after it returns
    done = r"dashboard_refresh_project_task\[[^\]]+\] succeeded in [0-9.]+s: True"
    assert re.search(done, via_worker.log()), via_worker.log()
    assert figures_cached(project.pk) is not None
    cache.delete_many(keys)
