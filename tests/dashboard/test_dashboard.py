"""The project dashboard: each figure by hand, who sees it, the cache and the beat job."""

import re
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone
from django.utils.safestring import SafeString

from apps.agreement.flags import agreement_tests, bias_tests, left_bias_tests
from apps.agreement.stats import wilson_interval
from apps.batches.models import Batch, Comparison
from apps.dashboard import figures as figures_module
from apps.dashboard import outliers, services
from apps.dashboard.charts import HEAT_MAX_TINT, TEXT, heat_fill
from apps.dashboard.figures import project_figures
from apps.dashboard.outliers import Thresholds, outlier_flags
from apps.dashboard.services import (
    Computing,
    dashboards_refresh,
    figures_cached,
    figures_for_page,
    figures_refresh,
    freshness,
    judgments_estimate,
)
from apps.dashboard.tasks import dashboard_refresh_project_task, dashboards_refresh_task
from apps.judging.models import Judgment
from apps.judging.queue import Preference, assignment_next, judgments_invalidate
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.agreement.test_stats import vote
from tests.conftest import prompt_line

URL = "/lead/p/demo/"


def age_figures(project, seconds):
    """Makes the cached figures `seconds` older, as time passing would."""
    figures = cache.get(services._key(project.pk))
    figures["computed_at"] -= seconds
    cache.set(services._key(project.pk), figures)


FIGURES_URL = "/lead/p/demo/figures/"

# Four comparisons of batch one (X, Y, Z: the pairs of p-1's three models; W: p-2's), three
# annotators. Per annotator: (option, A on the left, ms).
PLAN = {
    "ann": [("a", True, 1_000), ("a", True, 6_000), ("b", True, 12_000), ("a", True, 25_000)],
    "ben": [
        ("a", False, 45_000),
        ("tie", True, 70_000),
        ("b", True, 130_000),
        ("a", True, 400_000),
    ],
    "cat": [("b", True, 100), ("a", True, 200), ("both_bad", True, 700_000), ("a", True, None)],
}
DAYS_AGO = {"ann": 2, "ben": 1, "cat": 0}


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def judged(project, annotators, import_rows):
    """Batch one fully judged (12 votes over three days), batch two with one lease open."""
    first = import_rows(prompt_line("p-1", n=3), prompt_line("p-2"))
    second = import_rows(prompt_line("p-3", n=3))
    Batch.objects.filter(pk=first.pk).update(name="first")
    Batch.objects.filter(pk=second.pk).update(name="second")
    comparisons = list(Comparison.objects.filter(batch=first).order_by("id"))
    now = timezone.now()
    for user in annotators:
        for comparison, (option, a_on_left, ms) in zip(
            comparisons, PLAN[user.username], strict=True
        ):
            vote(project, user, comparison, option, a_on_left=a_on_left, duration_ms=ms)
        Judgment.objects.filter(annotator=user).update(
            created_at=now - timedelta(days=DAYS_AGO[user.username])
        )
    leased = Comparison.objects.filter(batch=second).order_by("id").first()
    lease = assignment_next(
        project=project, annotator=annotators[0], prefer=Preference(leased.pk, swap=False)
    )
    assert lease is not None and lease.comparison_id == leased.pk
    return project


def test_progress_per_batch_is_counted_by_hand(judged):
    figures = project_figures(judged)
    by_name = {batch["name"]: batch for batch in figures["batches"]}
    assert by_name["first"] | {"agreement": None} == by_name["first"] | {
        "comparisons": 4,
        "done": 4,
        "in_progress": 0,
        "open": 0,
        "partly_judged": 0,
        "judgments": 12,
        "percent_done": 100.0,
        "agreement": None,
    }
    assert by_name["second"]["comparisons"] == 3
    assert (by_name["second"]["done"], by_name["second"]["in_progress"]) == (0, 1)
    assert (by_name["second"]["open"], by_name["second"]["judgments"]) == (2, 0)
    assert by_name["second"]["partly_judged"] == 0

    assert by_name["second"]["agreement"] is None
    assert [batch["name"] for batch in figures["batches"]] == ["second", "first"]  # newest first
    assert figures["totals"] == {
        "comparisons": 7,
        "done": 4,
        "in_progress": 1,
        "open": 2,
        "judgments": 12,
        "annotators": 3,
    }


def test_a_comparison_with_some_votes_is_open_and_partly_judged(judged, annotators):
    second = Batch.objects.get(name="second")
    vote(judged, annotators[1], Comparison.objects.filter(batch=second).order_by("id").last(), "a")
    batch = next(b for b in project_figures(judged)["batches"] if b["name"] == "second")
    assert (batch["done"], batch["in_progress"], batch["open"]) == (0, 1, 2)
    assert (batch["partly_judged"], batch["judgments"]) == (1, 1)


def test_judgments_per_day_fill_the_days_between(judged):
    now = timezone.now()
    figures = project_figures(judged, now=now)
    days = [(now - timedelta(days=n)).date().isoformat() for n in (2, 1, 0)]
    assert figures["per_day"] == [{"day": day, "judgments": 4} for day in days]


def test_days_between_shows_at_most_the_last_days():
    from datetime import date

    counts = {date(2026, 1, 1): 5, date(2026, 3, 1): 2}
    days = figures_module.days_between(counts, last=date(2026, 3, 2), shown=3)
    assert days == [
        {"day": "2026-02-28", "judgments": 0},
        {"day": "2026-03-01", "judgments": 2},
        {"day": "2026-03-02", "judgments": 0},
    ]
    assert figures_module.days_between({}, last=date(2026, 3, 2)) == []


def test_time_per_judgment_falls_in_its_bucket(judged):
    durations = project_figures(judged)["durations"]
    # 1, 0.1, 0.2 s | 6 | 12 | 25 | 45 | 70 | 130 | 400 | 700; cat's last vote has no time.
    assert [b["count"] for b in durations["buckets"]] == [3, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [b["label"] for b in durations["buckets"]] == [
        "0\u20135 s",
        "5\u201310 s",
        "10\u201320 s",
        "20\u201330 s",
        "30 s\u20131 min",
        "1\u20132 min",
        "2\u20135 min",
        "5\u201310 min",
        "\u2265 10 min",
    ]
    assert durations["untimed"] == 1


def test_throughput_per_annotator(judged):
    rows = {row["username"]: row for row in project_figures(judged)["throughput"]}
    assert set(rows) == {"ann", "ben", "cat"}
    # Each judged 4 in one clock hour of one day; only cat's (today) are in the last 24 hours.
    assert rows["ann"] | {"pseudonym": ""} == {
        "username": "ann",
        "pseudonym": "",
        "judgments": 4,
        "last_24h": 0,
        "active_days": 1,
        "per_day": 4.0,
        "active_hours": 1,
        "per_hour": 4.0,
    }
    assert rows["cat"]["last_24h"] == 4
    assert rows["ben"]["last_24h"] == 0


def test_agreement_per_batch_and_for_the_project(judged):
    figures = project_figures(judged)
    first = next(b for b in figures["batches"] if b["name"] == "first")
    # Options: X a a b, Y a tie a, Z b b both_bad, W a a a (as in agreement/test_stats): with
    # ties 6 of 12 pairs agree, without ties 6 of 8, nominal alpha 3/14.
    expected = {
        "with_ties": 0.5,
        "with_ties_pairs": 12,
        "without_ties": 0.75,
        "without_ties_pairs": 8,
        "alpha": round(3 / 14, 4),
        "alpha_ordinal": None,
    }
    assert first["agreement"] == expected
    assert figures["agreement"] == expected
    assert figures["reference"]["instructgpt"]["agreement"] == 0.726
    assert figures["reference"]["hh_rlhf"]["agreement"] == 0.63


def test_models_leaderboard_and_win_rate_matrix(judged):
    models = project_figures(judged)["models"]
    assert sorted(models["names"]) == ["model-1", "model-2", "model-3"]
    assert [row["model"] for row in models["leaderboard"]] == models["names"]
    for row in models["leaderboard"]:
        assert row["ci95"][0] <= row["score"] <= row["ci95"][1]
    index = {name: i for i, name in enumerate(models["names"])}
    one, two = index["model-1"], index["model-2"]
    # model-1 against model-2: X (a a b) and W (a a a): 5 wins of 6 votes.
    assert models["matrix"][one][two] == round(5 / 6, 4)
    assert models["matrix"][two][one] == round(1 / 6, 4)
    assert models["votes"][one][two] == 6
    assert models["matrix"][one][one] is None
    crowd = models["crowd_leaderboard"]["models"]
    assert sorted(row["model"] for row in crowd) == ["model-1", "model-2", "model-3"]
    assert all(row["ci95"][0] <= row["score"] <= row["ci95"][1] for row in crowd)


def test_the_page_shows_reliability_and_the_crowd_leaderboard(client, bob, judged, no_worker):
    client.force_login(bob)
    html = client.get(URL).content.decode()
    figures = project_figures(judged)
    assert figures["crowd"]["variant"] == "vote"
    assert html.count('data-testid="reliability"') == len(figures["annotators"])
    assert "Reliability (95% interval)" in html and "as honest judgments" in html
    assert 'data-testid="crowd-leaderboard"' in html
    assert "annotators the model finds random count for little" in html
    assert "every vote counting alike" in html


def test_the_page_shows_cycles_and_the_expected_left_share(client, bob, judged, no_worker):
    # ann judged all three pairs of p-1 (1 > 2, 1 > 3, 3 > 2): one triad, no cycle; ben and
    # cat have none.
    client.force_login(bob)
    html = client.get(URL).content.decode()
    figures = project_figures(judged)
    assert '<th scope="col" class="num">Cycles</th>' in html
    assert html.count('data-testid="cycles"') == len(figures["annotators"])
    assert 'data-testid="cycles">0 <span class="muted">of 1 triads</span>' in html
    assert html.count('data-testid="cycles">—<') == 2
    assert "go round in a circle" in html and "<dt>intransitive</dt>" in html
    ann = next(row for row in figures["annotators"] if row["username"] == "ann")
    expected = ann["left_bias_test"]["expected"]
    assert f"expected {expected * 100:.0f}%" in html
    assert "<dt>left bias (against the model)</dt>" in html


def test_unreliable_is_flagged_with_the_figures():
    reliability = {
        "estimate": 0.04,
        "ci95": [0.0, 0.08],
        "effective_votes": 80.0,
        "unreliable": {"flagged": True, "others_median": 0.84, "others_median_ci95": [0.77, 0.91]},
    }
    row = summary(model_reliability=reliability)
    reasons = outlier_flags(row, project_median_ms=10_000, gold_min_accuracy=0, gold_min_answers=1)
    assert reasons == [
        {
            "flag": "unreliable",
            "reason": "the crowd model reads 4% of their votes as honest (95% interval 0% to "
            "8%), wholly below the median other annotator's 84% (77% to 91%)",
        }
    ]
    fine = reliability | {"unreliable": reliability["unreliable"] | {"flagged": False}}
    assert flags_of(summary(model_reliability=fine)) == []


def test_too_fast_is_flagged_with_its_reason(judged, monkeypatch):
    monkeypatch.setattr(outliers, "THRESHOLDS", Thresholds(fast_min_judgments=3))
    figures = project_figures(judged)
    # Ordinary timed votes' median: 25 s. cat's: 0.2 s (< 25/3); ann's 9 s, ben's 100 s.
    assert figures["project_median_ms"] == 25_000
    rows = {row["username"]: row for row in figures["annotators"]}
    assert rows["cat"]["flags"] == [
        {
            "flag": "too fast",
            "reason": "median 0.2 s per judgment over 3 judgments, below 0.33 of the "
            "project's median (25.0 s)",
        }
    ]
    assert rows["ann"]["flags"] == rows["ben"]["flags"] == []
    assert figures["annotators"][0]["username"] == "cat"  # flagged first


def test_too_few_judgments_are_never_flagged_too_fast(judged):
    figures = project_figures(judged)  # the real threshold: 20 timed judgments
    assert all(row["flags"] == [] for row in figures["annotators"])


def summary(**changes):
    base = {
        "annotator": "ann-1",
        "judgments": 100,
        "agreement_with_others": 0.8,
        "agreement_with_others_comparisons": 100,
        "agreement_test": agreement_test_of(80),
        "gold_answered": 0,
        "gold_accuracy": None,
        "position_bias": bias_of(50, 100),
        "tie_rate": 0.1,
        "both_bad_rate": 0.0,
        "median_duration_ms": 10_000,
        "timed_judgments": 100,
    }
    return base | changes


def bias_of(left, sides, project=0.5):
    """An annotator's position bias with its test, beside three others at 50 of 100."""
    return {
        "left_share": round(left / sides, 4),
        "left": left,
        "side_choices": sides,
        "ci95": wilson_interval(left, sides),
        "project_left_share": project,
        "test": bias_tests([left, 50, 50, 50], [sides, 100, 100, 100], [project] * 4)[0],
    }


def agreement_test_of(agree, *, others=(78, 80, 82), chance=0.5):
    """The agreement test of an annotator with `agree` of 100, beside three others of 100."""
    return agreement_tests([agree, *others], [100] * 4, [chance] * 4)[0]


def flags_of(row, **options):
    options = {"project_median_ms": 10_000, "gold_min_accuracy": 0.8, "gold_min_answers": 10}
    return [flag["flag"] for flag in outlier_flags(row, **options)]


def test_outlier_flags_by_hand():
    assert flags_of(summary()) == []
    always_left = bias_of(92, 100)
    assert flags_of(summary(position_bias=always_left)) == ["left bias"]
    always_right = bias_of(10, 100)
    assert flags_of(summary(position_bias=always_right)) == ["right bias"]
    # A high share over few choices is no evidence: 4 of 5.
    assert flags_of(summary(position_bias=bias_of(4, 5))) == []
    # It must be beyond one half by the margin (5 points): 62 of 100 is not, after Holm.
    assert flags_of(summary(position_bias=bias_of(62, 100))) == []
    # In a project whose annotators lean left (the median other at 85%), leaning left is theirs.
    assert flags_of(summary(position_bias=bias_of(92, 100, project=0.85))) == []
    assert flags_of(summary(median_duration_ms=3_000)) == ["too fast"]
    assert flags_of(summary(median_duration_ms=3_400)) == []  # not below a third of 10 s
    assert flags_of(summary(median_duration_ms=1_000, timed_judgments=19)) == []
    assert flags_of(summary(gold_answered=10, gold_accuracy=0.7)) == ["below gold"]
    assert flags_of(summary(gold_answered=9, gold_accuracy=0.1)) == []
    low = summary(agreement_with_others=0.4, agreement_test=agreement_test_of(40))
    assert flags_of(low) == ["low agreement"]
    # Low, but over too few comparisons to say so: 4 of 10 beside others' 80 of 100.
    few_low = agreement_tests([4, 78, 80, 82], [10, 100, 100, 100], [0.5] * 4)[0]
    assert flags_of(summary(agreement_with_others=0.4, agreement_test=few_low)) == []
    # Under an adaptive policy agreement is not tested: no test, no flag.
    assert flags_of(summary(agreement_with_others=0.0, agreement_test=None)) == []
    every = summary(
        position_bias=always_left,
        median_duration_ms=500,
        gold_answered=20,
        gold_accuracy=0.5,
        agreement_with_others=0.3,
        agreement_test=agreement_test_of(30),
    )
    reasons = outlier_flags(
        every, project_median_ms=10_000, gold_min_accuracy=0.8, gold_min_answers=10
    )
    assert [flag["reason"] for flag in reasons] == [
        "chose the left response in 92% of 100 choices of a side, significantly more than 55%: "
        "one half and the project's own left share (50%, the median of the other annotators') "
        "plus 5 points (one-sided exact binomial test, Holm-adjusted p = "
        f"{always_left['test']['p_left_holm']:.2g}, at 99% confidence, Holm over 8 tests)",
        "median 0.5 s per judgment over 100 judgments, below 0.33 of the project's median (10.0 s)",
        "gold accuracy 50% over 20 gold items, below the project's minimum of 80%",
        "agrees with the others' majority on 30% of 100 comparisons, significantly below the "
        "median other annotator's 80% of 100 (one-sided Fisher exact test, Holm-adjusted p = "
        "4.2e-12) and below chance, 50% (one-sided exact binomial test, Holm-adjusted p = "
        "0.00027), at 99% confidence (Holm over 8 tests); a random clicker is flagged after 36 "
        "comparisons",
    ]


def test_no_gold_minimum_means_no_gold_flag():
    row = summary(gold_answered=50, gold_accuracy=0.1)
    assert outlier_flags(row, project_median_ms=None, gold_min_accuracy=0, gold_min_answers=1) == []


def test_freshness_text():
    now = timezone.now()
    figures = {"computed_at": (now - timedelta(seconds=23)).timestamp()}
    assert freshness(figures, now=now) == "figures from 23 s ago, refreshed every 30 s"
    figures = {"computed_at": (now - timedelta(seconds=200)).timestamp()}
    assert freshness(figures, now=now) == (
        "figures from 3 min 20 s ago, refreshed every 30 s (late: is the Celery beat running?)"
    )


def test_freshness_follows_the_setting(settings):
    settings.DASHBOARD_REFRESH_SECONDS = 60
    now = timezone.now()
    assert freshness({"computed_at": now.timestamp()}, now=now) == (
        "figures from 0 s ago, refreshed every 1 min"
    )


# -- who sees it -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, FIGURES_URL])
def test_anonymous_is_sent_to_log_in(client, project, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", [URL, FIGURES_URL])
def test_an_annotator_never_sees_it(client, project, annotators, url):
    client.force_login(annotators[0])
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("url", [URL, FIGURES_URL])
def test_the_lead_of_another_project_does_not_see_it(client, project, charlie, alice, url):
    other = project_create(slug="other", name="Other", created_by=alice)
    membership_add(project=other, user=charlie, role="lead")
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    assert client.get("/lead/p/other/").status_code == 200


@pytest.mark.parametrize("url", [URL, FIGURES_URL])
def test_the_lead_and_staff_see_it(client, project, bob, alice, url):
    for user in (bob, alice):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"
        assert b'data-testid="freshness"' in response.content


def test_a_user_with_no_access_gets_404(client, project, charlie):
    client.force_login(charlie)
    assert client.get(URL).status_code == 404


def test_the_page_shows_the_figures(client, bob, judged, no_worker):
    # With a broker (no_worker): the beat job refreshes them, and the page says how often.
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert re.search(r'data-testid="total-judgments">12<', html)
    assert re.search(r'data-testid="total-in-progress">1<', html)
    assert 'hx-get="/lead/p/demo/figures/"' in html
    assert 'hx-trigger="every 30s"' in html
    assert html.count('<svg class="chart" role="img"') == 6
    for heading in ("Progress", "Throughput", "Agreement", "Annotators", "Models"):
        assert f">{heading}</h2>" in html
    assert "72.6%" in html and "about 63%" in html
    assert re.search(r"Figures from \d+ s ago, refreshed every 30 s\.", html)
    fragment = client.get(FIGURES_URL).content.decode()
    assert fragment.startswith('\n<div id="figures"') or fragment.lstrip().startswith(
        '<div id="figures"'
    )
    assert "<html" not in fragment


def test_a_project_without_judgments_says_so_instead_of_drawing_empty_charts(
    client, bob, project, import_rows
):
    import_rows(prompt_line("p-1"))
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert re.search(r'data-testid="total-judgments">0<', html)
    assert "No judgment yet." in html
    assert 'data-testid="no-durations">No timed judgment yet.<' in html
    assert 'data-testid="durations"' not in html
    assert html.count('<svg class="chart" role="img"') == 1  # progress per batch only


def test_the_page_renders_from_the_cache_until_the_beat_job_runs(
    client, bob, judged, annotators, no_worker
):
    # With a broker (no_worker): a worker and the beat job compute the figures, not the page.
    client.force_login(bob)
    assert re.search(r'data-testid="total-judgments">12<', client.get(URL).content.decode())
    batch = Batch.objects.get(name="second")
    comparison = Comparison.objects.filter(batch=batch).order_by("id").last()
    vote(judged, annotators[1], comparison, "a")
    # The cached figures are shown as they are...
    assert re.search(r'data-testid="total-judgments">12<', client.get(URL).content.decode())
    # ...until the beat job computes new ones (it leaves figures younger than half its period).
    age_figures(judged, 20)
    report = dashboards_refresh_task.apply().get()
    assert report["refreshed"][0][0] == "demo"
    assert re.search(r'data-testid="total-judgments">13<', client.get(URL).content.decode())


def test_the_page_costs_the_same_queries_at_any_size(
    client, bob, judged, annotators, django_assert_max_num_queries, no_worker
):
    client.force_login(bob)
    client.get(URL)  # fills the cache
    with django_assert_max_num_queries(6):  # session, user, project, admin link check
        assert client.get(URL).status_code == 200
    with django_assert_max_num_queries(4):
        assert client.get(FIGURES_URL).status_code == 200


def test_the_beat_job_fills_the_cache(project, import_rows, alice):
    import_rows(prompt_line("p-1", n=3))
    idle = project_create(slug="idle", name="Idle", created_by=alice)
    assert figures_cached(project.pk) is None
    report = dashboards_refresh_task.delay().get()
    figures = figures_cached(project.pk)
    assert figures is not None
    assert figures["totals"]["comparisons"] == 3
    assert abs(figures["computed_at"] - timezone.now().timestamp()) < 60
    assert [slug for slug, _ in report["refreshed"]] == ["demo"]
    # No active batch and nobody looking: nothing to refresh.
    assert figures_cached(idle.pk) is None


def test_the_beat_job_refreshes_a_project_someone_watches(client, alice):
    idle = project_create(slug="idle", name="Idle", created_by=alice)
    client.force_login(alice)
    client.get("/lead/p/idle/")
    first = figures_cached(idle.pk)
    assert first is not None
    Project.objects.filter(pk=idle.pk).update(name="Renamed")
    # Figures computed moments ago are not computed again...
    assert dashboards_refresh() == {"refreshed": [], "skipped": ["idle"]}
    assert figures_cached(idle.pk)["project"]["name"] == "Idle"
    # ...once older than half the period, they are.
    first["computed_at"] -= 20
    cache.set(services._key(idle.pk), first)
    assert [slug for slug, _ in dashboards_refresh()["refreshed"]] == ["idle"]
    assert figures_cached(idle.pk)["project"]["name"] == "Renamed"


def test_one_computation_at_a_time(project):
    lock = services._lock_key(project.pk)
    assert cache.add(lock, "someone else", 60)
    assert figures_refresh(project) is None  # the lock is held: no second computation
    assert dashboards_refresh()["skipped"] == []  # (demo has no batch: not active)
    assert figures_for_page(project) == Computing(judgments=0)  # the other is computing
    cache.delete(lock)
    assert isinstance(figures_for_page(project), dict)


def test_a_cold_page_shows_the_computation_in_progress_without_waiting(client, bob, judged):
    lock = services._lock_key(judged.pk)
    cache.add(lock, "someone else", 60)
    client.force_login(bob)
    started = time.monotonic()
    html = client.get(URL).content.decode()
    assert time.monotonic() - started < 5  # it used to wait up to 60 s for the other
    assert COMPUTING.format(n=12) in html
    assert 'hx-trigger="every 3s"' in html
    assert figures_cached(judged.pk) is None
    # The one computing stores the figures: the next poll brings them.
    cache.delete(lock)
    figures_refresh(judged)
    fragment = client.get(FIGURES_URL).content.decode()
    assert re.search(r'data-testid="total-judgments">12<', fragment)
    assert 'hx-trigger="every 30s"' in fragment


def test_stale_figures_are_refreshed_by_a_task(client, bob, judged, annotators, no_worker):
    client.force_login(bob)
    client.get(URL)
    key = services._key(judged.pk)
    old = cache.get(key)
    old["computed_at"] -= 1_000
    old["totals"]["judgments"] = -1
    old["html"] = SafeString('<p data-testid="stale">old figures</p>')
    cache.set(key, old)
    # With a broker: the stale figures are shown, and the worker asked for new ones (once).
    html = client.get(URL).content.decode()
    assert '<p data-testid="stale">old figures</p>' in html
    assert "(late: is the Celery beat running?)" in html
    assert no_worker == [(REFRESH_TASK, [judged.pk])]
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is True
    assert figures_cached(judged.pk)["totals"]["judgments"] == 12
    assert 'data-testid="stale"' not in client.get(URL).content.decode()


# -- a cold cache: computed in the request only for a small project -------------------------

COMPUTING = (
    "Computing this project's figures (about {n} judgments); this page fills in when they are ready"
)
REFRESH_TASK = "apps.dashboard.tasks.dashboard_refresh_project_task"


def test_the_estimate_is_the_members_judgment_counts(judged, annotators):
    assert judgments_estimate(judged) == Judgment.objects.count() == 12
    vote(judged, annotators[1], Comparison.objects.filter(batch__name="second").last(), "a")
    assert judgments_estimate(judged) == 13


def test_a_small_project_on_a_cold_cache_is_computed_in_the_request(
    client, bob, judged, settings, no_worker
):
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 12  # at most: the 12 judgments are computed here
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert re.search(r'data-testid="total-judgments">12<', html)
    assert 'hx-trigger="every 30s"' in html
    assert figures_cached(judged.pk) is not None
    assert no_worker == []  # nothing asked of the worker


def test_a_large_project_on_a_cold_cache_asks_the_worker_and_says_so(
    client, bob, judged, settings, no_worker, django_assert_max_num_queries
):
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 11
    client.force_login(bob)
    with django_assert_max_num_queries(7):  # the warm page's 6, and the estimate
        response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert COMPUTING.format(n=12) in html
    assert 'hx-get="/lead/p/demo/figures/"' in html
    assert 'hx-trigger="every 3s"' in html  # sooner than the usual 30 s
    assert 'data-testid="total-judgments"' not in html
    assert no_worker == [(REFRESH_TASK, [judged.pk])]
    # Nothing computed it (no worker); the polls keep saying so, and ask the worker only once.
    assert figures_cached(judged.pk) is None
    for _ in range(2):
        fragment = client.get(FIGURES_URL).content.decode()
        assert COMPUTING.format(n=12) in fragment
        assert 'hx-trigger="every 3s"' in fragment
    assert figures_cached(judged.pk) is None
    assert len(no_worker) == 1
    # The worker runs the task; the next poll brings the figures, and the usual poll again.
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is True
    fragment = client.get(FIGURES_URL).content.decode()
    assert re.search(r'data-testid="total-judgments">12<', fragment)
    assert 'hx-trigger="every 30s"' in fragment
    assert "Computing" not in fragment
    assert len(no_worker) == 1


def progress(html: str) -> str:
    found = re.search(r'data-testid="computing-progress">([^<]*)<', html)
    assert found, html
    return found.group(1)


def test_the_computing_page_says_how_far_the_figures_are(client, bob, judged, settings, no_worker):
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 0
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert progress(html) == "Waiting for a worker to start on them (asked 0 s ago)."
    assert 'data-testid="worker-late"' not in html
    # A minute on, no worker has taken the task: the page asks whether one runs.
    cache.set(services._waiting_key(judged.pk), time.time() - 75)
    html = client.get(FIGURES_URL).content.decode()
    assert progress(html) == "Waiting for a worker to start on them (asked 75 s ago)."
    assert "No worker has started yet: is a Celery worker running?" in html
    # A worker takes it: the lock says since when.
    cache.set(services._lock_key(judged.pk), f"abc@{time.time() - 12:.3f}", 60)
    html = client.get(FIGURES_URL).content.decode()
    assert progress(html) == "A worker started on them 12 s ago."
    assert 'data-testid="worker-late"' not in html
    # It stores them: the wait is over, and a later cold start waits afresh.
    cache.delete(services._lock_key(judged.pk))
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is True
    assert cache.get(services._waiting_key(judged.pk)) is None
    assert "Computing" not in client.get(FIGURES_URL).content.decode()


def test_a_task_queued_behind_one_that_did_the_work_does_not_compute_again(judged):
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is True
    computed = figures_cached(judged.pk)["computed_at"]
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is False
    assert figures_cached(judged.pk)["computed_at"] == computed
    age_figures(judged, 20)  # older than half the period: a refresh is due
    assert dashboard_refresh_project_task.apply(args=[judged.pk]).get() is True


def test_with_celery_eager_a_large_project_is_computed_at_once(client, bob, judged, settings):
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 0
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert re.search(r'data-testid="total-judgments">12<', html)


def total_judgments(html: str) -> int:
    found = re.search(r'data-testid="total-judgments">(\d+)<', html)
    assert found, html
    return int(found.group(1))


def test_with_tasks_in_process_the_figures_follow_each_change(client, bob, judged, annotators):
    """`make run` (Celery eager, no beat): an invalidation shows on the next view, and the page
    never asks whether the beat runs, however old the cached figures."""
    assert services.tasks_in_process()
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert total_judgments(html) == 12
    assert "computed on each view (tasks run in-process, no beat job)" in html
    result = judgments_invalidate(project=judged, annotator=annotators[0], actor=bob, reason="spam")
    assert result.judgments == 4
    html = client.get(URL).content.decode()
    assert total_judgments(html) == 8
    assert "beat running" not in html
    # Long after (no beat ran meanwhile), a view and the HTMX poll still show current figures.
    age_figures(judged, 10_000)
    vote(judged, annotators[1], Comparison.objects.filter(batch__name="second").last(), "a")
    for url in (URL, FIGURES_URL):
        html = client.get(url).content.decode()
        assert total_judgments(html) == 9
        assert "beat running" not in html
        assert "late:" not in html


def test_with_tasks_in_process_the_freshness_never_asks_for_the_beat():
    now = timezone.now()
    figures = {"computed_at": (now - timedelta(seconds=200)).timestamp()}
    assert freshness(figures, now=now, in_process=True) == (
        "figures from 3 min 20 s ago, computed on each view (tasks run in-process, no beat job)"
    )


# -- hostile names ---------------------------------------------------------------------------


HOSTILE = '<script>alert("x")</script>'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SVG = '"><svg onload=alert(1)>'


def test_hostile_names_are_escaped(client, bob, project, annotators, import_rows):
    Project.objects.filter(pk=project.pk).update(name=HOSTILE)
    row = prompt_line("p-1")
    row["candidates"][0]["model"] = HOSTILE_SVG
    row["candidates"][1]["model"] = HOSTILE_IMG
    batch = import_rows(row)
    Batch.objects.filter(pk=batch.pk).update(name=HOSTILE_IMG)
    comparison = Comparison.objects.get(batch=batch)
    for user in annotators:
        vote(project, user, comparison, "a")
    client.force_login(bob)
    html = client.get(URL).content.decode()
    for raw in (HOSTILE, HOSTILE_IMG, HOSTILE_SVG, "<svg onload", "<img src=x"):
        assert raw not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&quot;&gt;&lt;svg onload=alert(1)&gt;" in html
    assert "<script" not in html.split("</head>", 1)[1]


def test_heat_map_text_keeps_aa_contrast():
    def luminance(colour):
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    assert HEAT_MAX_TINT < 1
    for rate in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        ratio = (luminance(heat_fill(rate)) + 0.05) / (luminance(TEXT) + 0.05)
        assert ratio >= 4.5, (rate, ratio)
    assert heat_fill(0.5) == "#ffffff"
    assert heat_fill(1.0) != heat_fill(0.0)


# -- the admin links to it -------------------------------------------------------------------


def test_the_admin_links_to_the_dashboard(client, bob, project):
    client.force_login(bob)
    listing = client.get("/admin/projects/project/").content.decode()
    assert 'href="/lead/p/demo/"' in listing
    change = client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert 'href="/lead/p/demo/"' in change


def test_the_left_bias_against_the_model_raises_one_left_bias_flag():
    # 20 lefts of 20 where the model expects one half (beside one other annotator): flagged;
    # 40 of 50 where it expects 0.8 is not, though 80% is far beyond one half.
    clicker, fair = left_bias_tests([20, 40], [np.full(20, 0.5), np.full(50, 0.8)])
    assert flags_of(summary(left_bias_test=fair)) == []
    assert flags_of(summary(left_bias_test=clicker)) == ["left bias"]
    # With the margin test's left flag too, still one flag, with the model's reason.
    both = summary(left_bias_test=clicker, position_bias=bias_of(92, 100))
    options = {"project_median_ms": 10_000, "gold_min_accuracy": 0.8, "gold_min_answers": 10}
    (flag,) = outlier_flags(both, **options)
    assert flag["flag"] == "left bias"
    assert flag["reason"] == (
        "chose the left response in 100% of 20 choices of a side, where the models' strengths "
        "expect 50% of the comparisons they saw (one-sided exact Poisson-binomial test against "
        f"each vote's chance, Holm-adjusted p = {clicker['p_holm']:.2g}, at 99% confidence, "
        "Holm over 2 tests); an "
        "always-left clicker is flagged after 8 choices"
    )
    # A right bias of the margin test stays.
    assert flags_of(summary(left_bias_test=fair, position_bias=bias_of(10, 100))) == ["right bias"]
