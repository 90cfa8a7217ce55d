"""The project dashboard in a real browser: a lead watches the numbers move as judgments arrive.

Run with SCREENSHOTS=1 to refresh docs/dashboard.png (the `manage.py demo` project, judged).
"""

import json
import os
import random
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.batches.audit import audit_sample_mark
from apps.batches.models import Comparison
from apps.batches.policy_follow import comparison_policy_follow
from apps.dashboard.services import dashboards_refresh
from apps.dashboard.tasks import dashboard_refresh_project_task
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add
from tests.agreement.test_stats import vote
from tests.conftest import prompt_line
from tests.dashboard.test_dashboard import REFRESH_TASK
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import fill_login, log_in

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = Path(__file__).resolve().parents[2] / "docs"
WAIT_MS = 10_000
SLOW_WAIT_MS = 30_000  # polls every 3 s, on a loaded machine


def api_post(base_url: str, user: User, path: str, payload: dict | None = None) -> Any:
    token, _ = Token.objects.get_or_create(user=user)
    request = urllib.request.Request(  # noqa: S310 - the live server's own http URL
        f"{base_url}{path}",
        data=json.dumps(payload or {}).encode(),
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body = response.read()
        return response.status, json.loads(body) if body else None


def judge_through_the_api(base_url: str, user: User, choice: str) -> None:
    status, lease = api_post(base_url, user, "/api/v1/projects/demo/assignments/next/")
    assert status == 200, status
    status, _ = api_post(
        base_url,
        user,
        f"/api/v1/assignments/{lease['id']}/judgment/",
        {"choice": choice, "duration_ms": 4_000},
    )
    assert status == 201


def tile(page: Any, name: str) -> str:
    return page.inner_text(f"[data-testid=total-{name}]")


def test_a_lead_sees_the_numbers_move_as_judgments_arrive(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    annotators: list[User],
    import_rows: Any,
    settings: Any,
) -> None:
    settings.DASHBOARD_POLL_SECONDS = 1
    cache.clear()
    # Depth first: the three votes go to one comparison, which is then done.
    project.policy = "depth_first"
    project.save(update_fields=["policy"])
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 4)))  # 9 comparisons
    base = live_server.url
    log_in(page, base, "bob")
    page.goto(f"{base}/lead/p/demo/")
    assert page.title().startswith("Dashboard")
    assert tile(page, "judgments") == "0"
    assert tile(page, "open") == "9"
    freshness = page.inner_text("[data-testid=freshness]")
    assert "Figures from" in freshness and "computed on each view" in freshness
    assert "beat running" not in freshness
    page.evaluate("window.__sameDocument = 'kept'")

    # Three annotators judge the same comparison through the API, one opens another lease.
    for user, choice in zip(annotators, ["left", "left", "right"], strict=True):
        judge_through_the_api(base, user, choice)
    status, _ = api_post(base, annotators[0], "/api/v1/projects/demo/assignments/next/")
    assert status == 200
    # Tasks run in-process here (as under `make run`: no worker, no beat job), so each poll
    # computes the figures: the next one brings the new numbers in, without a page load.
    # (tests/dashboard/test_dashboard.py covers the cache kept fresh by the beat job, with a
    # broker.)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=total-judgments]').textContent === '3'",
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.__sameDocument") == "kept", "a full page load happened"
    assert tile(page, "done") == "1"
    assert tile(page, "in-progress") == "1"
    assert tile(page, "open") == "7"
    assert tile(page, "annotators") == "3"
    agreement = page.locator("[data-testid=agreement] tr.total").inner_text()
    # The sides were drawn at random: which candidate did each vote choose?
    votes = [
        "a" if j.chosen_id == j.comparison.candidate_a_id else "b"
        for j in Judgment.objects.select_related("comparison")
    ]
    agreeing = sum(votes[i] == votes[j] for i, j in ((0, 1), (0, 2), (1, 2)))
    assert f"{100 * agreeing / 3:.1f}%" in agreement
    rows = page.locator("[data-testid=throughput] tbody th").all_inner_texts()
    assert sorted(row.split()[0] for row in rows) == ["ann", "ben", "cat"]
    assert page.locator("svg.chart").count() == 6
    assert page.locator("svg.chart > title").first.text_content() == "Progress per batch of Demo"
    assert page.get_by_role("img", name="Judgments per day (UTC)").count() == 1

    # A reload shows the same figures, rendered from the cache.
    page.reload()
    assert tile(page, "judgments") == "3"
    page_log.assert_clean(base)  # no CSP violation, no script error, no other origin


def test_a_large_projects_first_view_fills_in_when_the_figures_are_ready(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    annotators: list[User],
    import_rows: Any,
    settings: Any,
    no_worker: list[tuple[str, Any]],
    tmp_path: Path,
) -> None:
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 0  # every project is "large"
    settings.DASHBOARD_REFRESH_SECONDS = 600  # the page asks the worker once a period: once here
    cache.clear()
    import_rows(prompt_line("p-1", n=3))
    for user in annotators:
        vote(project, user, Comparison.objects.order_by("id").first(), "a")
    base = live_server.url
    log_in(page, base, "bob")
    page.goto(f"{base}/lead/p/demo/")
    assert "Computing this project's figures (about 3 judgments)" in (
        page.inner_text("[data-testid=computing]")
    )
    assert page.locator("[data-testid=total-judgments]").count() == 0
    assert page.inner_text("[data-testid=computing-progress]").startswith(
        "Waiting for a worker to start on them (asked "
    )
    # The import's rendering task went to the queue too (on its commit): only the dashboard's
    # counts here.
    assert [sent for sent in no_worker if sent[0] == REFRESH_TASK] == [(REFRESH_TASK, [project.pk])]
    # docs/dashboard-computing.png, refreshed with SCREENSHOTS=1 (else a temporary path).
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.screenshot(
        path=str(target / "dashboard-computing.png"),
        clip={"x": 0, "y": 0, "width": 1280, "height": 240},
    )
    page.evaluate("window.__sameDocument = 'kept'")
    polls = f"{base}/lead/p/demo/figures/"
    # No worker runs here: the page polls (every 3 s) and keeps saying so...
    page.wait_for_function(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.endsWith('/lead/p/demo/figures/')).length >= 1",
        timeout=SLOW_WAIT_MS,
    )
    assert polls in page_log.requests
    assert page.locator("[data-testid=computing]").count() == 1
    # ...until the worker's task has stored the figures: the next poll shows them, in place.
    assert dashboard_refresh_project_task.apply(args=[project.pk]).get() is True
    page.wait_for_selector("[data-testid=total-judgments]", timeout=SLOW_WAIT_MS)
    assert tile(page, "judgments") == "3"
    assert page.evaluate("window.__sameDocument") == "kept", "a full page load happened"
    assert page.locator("[data-testid=computing]").count() == 0
    assert page.get_attribute("#figures", "hx-trigger") == "every 30s"  # the usual poll again
    assert [sent for sent in no_worker if sent[0] == REFRESH_TASK] == [
        (REFRESH_TASK, [project.pk])
    ]  # asked once
    page_log.assert_clean(base)  # no CSP violation, no script error, no other origin


def demo_with_judgments(seed: int = 7) -> Project:
    """`manage.py demo`, five more annotators, and most comparisons judged over two weeks."""
    call_command("demo", "--base-url", "http://127.0.0.1:8000/", verbosity=0)
    project = Project.objects.get(slug="demo")
    # An audit sample, so that the page shows its agreement table.
    project.audit_rate = 0.25
    project.save(update_fields=["audit_rate"])
    audit_sample_mark(project=project)
    crowd = list(User.objects.filter(username__startswith="annotator").order_by("username"))
    for n in range(4, 9):
        user = User.objects.create_user(f"annotator{n}", password="demo-annotator-pass")
        membership_add(project=project, user=user, role="annotator")
        crowd.append(user)
    rng = random.Random(seed)
    strength = {"cirrus-70b": 1.2, "borealis-13b": 0.4, "atlas-7b": -0.3, "delta-mini": -0.9}
    always_left, fast = crowd[6], crowd[7]
    now = timezone.now()
    for _ in range(190):  # about three quarters of the 234 votes the demo batch needs
        user = rng.choice(crowd)
        lease = assignment_next(project=project, annotator=user)
        if lease is None:
            continue
        if rng.random() < 0.08:
            continue  # leave the lease open: in progress
        comparison = Comparison.objects.select_related("candidate_a", "candidate_b").get(
            pk=lease.comparison_id
        )
        a, b = comparison.candidate_a, comparison.candidate_b
        p_a = 1 / (1 + pow(10, (strength.get(b.model, 0) - strength.get(a.model, 0)) / 1.2))
        draw = rng.random()
        if user == always_left:
            choice = "left"
        elif draw < 0.08:
            choice = "tie"
        else:
            winner = a if rng.random() < p_a else b
            choice = "left" if lease.left_id == winner.pk else "right"
        ms = rng.randint(700, 1_500) if user == fast else int(rng.lognormvariate(10.0, 0.5))
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice, duration_ms=ms)
    for judgment in Judgment.objects.filter(comparison__project=project):
        judgment.created_at = now - timedelta(days=rng.random() * 14)
        judgment.save(update_fields=["created_at"])
    return project


def dashboard_at(page: Any, base: str, width: int, height: int) -> Project:
    """The demo project with judgments, its figures computed, its dashboard open for its lead
    in a window of `width` x `height`."""
    cache.clear()
    project = demo_with_judgments()
    dashboards_refresh()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{base}/accounts/login/")
    fill_login(page, "lead", "demo-lead-pass")
    page.goto(f"{base}/lead/p/{project.slug}/")
    assert int(tile(page, "judgments")) > 150
    return project


def test_dashboard_screenshot(
    live_server: Any, page: Any, page_log: PageLog, tmp_path: Path, settings: Any
) -> None:
    """docs/dashboard.png, refreshed with SCREENSHOTS=1 (otherwise written to a temporary path)."""
    base = live_server.url
    dashboard_at(page, base, 1366, 768)
    assert page.locator("tr.flagged").count() >= 1
    # Every label of the win-rate matrix is drawn inside it (the last column's used to be cut).
    outside = page.evaluate(
        """() => {
          const svg = document.querySelector('svg[aria-labelledby^="chart-heat-map"]');
          const box = svg.getBoundingClientRect();
          return [...svg.querySelectorAll('text')].filter((text) => {
            const r = text.getBoundingClientRect();
            return r.left < box.left || r.right > box.right || r.top < box.top
              || r.bottom > box.bottom;
          }).map((text) => text.textContent);
        }"""
    )
    assert outside == []
    assert page.get_by_test_id("heat-map-caption").is_visible()
    # The annotator table (with reliability) and both leaderboards fit the 1366 px width.
    assert page.get_by_test_id("crowd-leaderboard").is_visible()
    assert page.get_by_test_id("audit-agreement").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    for table in ("annotators", "leaderboard", "crowd-leaderboard", "audit-agreement"):
        box = page.get_by_test_id(table).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1366
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(target / "dashboard.png"), full_page=True)
    page_log.assert_clean(base)


def test_dashboard_at_768_px(
    live_server: Any, page: Any, page_log: PageLog, tmp_path: Path, settings: Any
) -> None:
    """At 768 px (a tablet held upright) the page does not scroll sideways: a table wider than
    the screen scrolls inside its own frame, and every section, the audit sample's agreement
    included, is there. docs/dashboard-tablet.png, refreshed with SCREENSHOTS=1."""
    base = live_server.url
    dashboard_at(page, base, 768, 1024)
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    for table in ("annotators", "leaderboard", "crowd-leaderboard", "audit-agreement"):
        locator = page.get_by_test_id(table)
        locator.scroll_into_view_if_needed()
        assert locator.is_visible(), table
        # Its frame fits the screen, whatever its own width.
        frame = page.evaluate(
            """(testid) => {
              let node = document.querySelector(`[data-testid="${testid}"]`);
              while (node && node !== document.body) {
                const style = getComputedStyle(node);
                if (['auto', 'scroll'].includes(style.overflowX)) break;
                node = node.parentElement;
              }
              const box = (node || document.body).getBoundingClientRect();
              return [box.left, box.right];
            }""",
            table,
        )
        assert frame[0] >= 0 and frame[1] <= 768, (table, frame)
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(target / "dashboard-tablet.png"), full_page=True)
    # The annotators' frame scrolls by keyboard: it takes focus, and the arrow keys move it.
    scroller = page.locator(".table-scroll").first
    scroller.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('.table-scroll').scrollLeft > 0")
    assert "{#" not in page.inner_text("main")  # no template comment shown as text
    # The flags come second, so that they are on screen before the table scrolls; every row
    # has as many cells as the head has columns.
    shape = page.evaluate(
        """() => {
          const table = document.querySelector('[data-testid="annotators"]');
          const head = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
          return [head, [...table.tBodies[0].rows].map((r) => r.cells.length)];
        }"""
    )
    assert shape[0][:2] == ["Annotator", "Flags"]
    assert set(shape[1]) == {len(shape[0])}
    flags_box = page.locator('[data-testid="annotators"] td.flag-cell').first.bounding_box()
    assert flags_box is not None and flags_box["x"] + flags_box["width"] <= 768
    page_log.assert_clean(base)


def test_a_change_of_policy_in_progress_shows_until_its_task_has_run(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    import_rows: Any,
    settings: Any,
    no_worker: list[tuple[str, Any]],
    tmp_path: Path,
) -> None:
    """A lead changes the policy of a project too large to follow in the change's transaction;
    with no worker running the dashboard says the change waits, and the HTMX poll takes the
    notice away once the follow (the task's body, run here) has moved every comparison."""
    settings.POLICY_FOLLOW_INLINE = 2
    settings.DASHBOARD_POLL_SECONDS = 2
    cache.clear()
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(3)))
    project.policy = "random"
    project.save(update_fields=["policy"])
    assert ("apps.batches.tasks.policy_follow_task", [project.pk]) in no_worker
    base = live_server.url
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, base, "bob")
    page.goto(f"{base}/lead/p/demo/")
    notice = page.locator("[data-testid=policy-follow]")
    text = notice.inner_text()
    assert "The project's queue settings were changed at " in text
    assert "(policy Random, overlap 3)" in text
    assert "waiting for a worker to start" in text
    assert notice.get_attribute("role") == "status"
    # docs/dashboard-policy-follow.png, refreshed with SCREENSHOTS=1 (else a temporary path).
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    page.screenshot(
        path=str(target / "dashboard-policy-follow.png"),
        clip={"x": 0, "y": 0, "width": 1366, "height": 260},
    )
    # At 768 px the notice wraps inside the screen and the page does not scroll sideways;
    # docs/dashboard-policy-follow-tablet.png.
    page.set_viewport_size({"width": 768, "height": 1024})
    box = notice.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 768
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    page.screenshot(
        path=str(target / "dashboard-policy-follow-tablet.png"),
        clip={"x": 0, "y": 0, "width": 768, "height": box["y"] + box["height"] + 24},
    )
    page.evaluate("window.__sameDocument = 'kept'")
    comparison_policy_follow(project_id=project.pk)
    page.wait_for_selector("[data-testid=policy-follow]", state="detached", timeout=SLOW_WAIT_MS)
    assert page.evaluate("window.__sameDocument") == "kept", "a full page load happened"
    page_log.assert_clean(base)
