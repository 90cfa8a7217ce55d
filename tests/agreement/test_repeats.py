"""Repeat consistency (apps/agreement/repeats.py): the Fisher test by hand, and on a project with
a planted inconsistent annotator: /stats/, the dashboard's column and its flag."""

import html as html_module
import math
import re

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from scipy.stats import hypergeom

from apps.agreement.flags import CONFIDENCE
from apps.agreement.repeats import (
    MIN_PROBES,
    clicker_consistency,
    random_clicker_min_probes,
    repeat_tests,
)
from apps.batches.models import Batch
from apps.judging.models import Judgment, RepeatProbe
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.selectors import pseudonyms_for
from tests.conftest import prompt_line

STATS = "/api/v1/projects/demo/stats/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The page's "left" count and the dashboard's figures are cached under ids the next test
    reuses: leave an empty cache behind, as found."""
    cache.clear()
    yield
    cache.clear()


def test_the_test_is_fishers_exact_against_the_others_pooled():
    [low, high, thin] = repeat_tests([20, 40, 3], [8, 38, 1], chance=0.25)
    # Annotator 0: 8 of 20 against the others' 39 of 43, one-sided (fewer consistent).
    p = hypergeom.cdf(8, 63, 47, 20)
    assert low["test"]["p_value"] == pytest.approx(p, rel=1e-3)
    assert low["test"]["flagged"] and not high["test"]["flagged"]
    assert low["test"]["correction"] == "Holm over 2 tests"
    assert (low["probes"], low["consistent"], low["consistency"]) == (20, 8, 0.4)
    assert low["others_consistency"] == round(39 / 43, 4)
    assert low["ci95"][0] < 0.4 < low["ci95"][1]
    # Below MIN_PROBES: reported, not tested.
    assert thin["test"] is None and thin["min_probes"] == MIN_PROBES
    assert repeat_tests([0, 5], [0, 5], chance=0.25)[0] is None


def test_a_random_clicker_needs_the_evidence_it_reports():
    needed = random_clicker_min_probes(0.25, 90, 100, (1 - CONFIDENCE) / 3)
    assert needed is not None and needed >= MIN_PROBES

    def flagged(n: int) -> bool:
        k = math.ceil(0.25 * n - 1e-9)
        return hypergeom.cdf(k, n + 100, k + 90, n) < (1 - CONFIDENCE) / 3

    assert flagged(needed) and not flagged(needed - 1)


def test_a_clicker_repeats_by_chance():
    assert clicker_consistency((0.25,) * 4) == 0.25
    assert clicker_consistency((0.5, 0.5, 0.0, 0.0)) == 0.5


@pytest.fixture
def planted(project, annotators, import_rows):
    """Every annotator judged 30 comparisons; each judgment was repeated. ann and ben answered
    their repeats as the first time (30 and 28 of 30), cat 9 of 30."""
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 11)))
    for user in annotators:
        for _ in range(30):
            lease = assignment_next(project=project, annotator=user)
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    now = timezone.now()
    consistent = {"ann": 30, "ben": 28, "cat": 9}
    for user in annotators:
        judgments = Judgment.objects.filter(annotator=user).order_by("id")
        for i, judgment in enumerate(judgments):
            RepeatProbe.objects.create(
                project=project,
                annotator=user,
                comparison_id=judgment.comparison_id,
                original=judgment,
                left_id=judgment.right_id,
                right_id=judgment.left_id,
                due_after=i + 21,
                created_at=now,
                served_at=now,
                answered_at=now,
                choice="a",
                consistent=i < consistent[user.username],
            )
    # An unanswered probe counts for nothing: ann's first.
    first = RepeatProbe.objects.filter(annotator__username="ann").order_by("id")[0]
    RepeatProbe.objects.filter(pk=first.pk).update(consistent=None, answered_at=None)
    return pseudonyms_for(project)


def test_stats_report_repeats_per_annotator_and_test_them(api, bob, annotators, planted):
    report = api(bob).get(STATS).json()
    by_user = {planted[user.pk]: user.username for user in annotators}
    rows = {by_user[row["annotator"]]: row for row in report["annotators"]}
    ann, ben, cat = rows["ann"]["repeat"], rows["ben"]["repeat"], rows["cat"]["repeat"]
    assert (cat["probes"], cat["consistent"], cat["consistency"]) == (30, 9, 0.3)
    assert (ben["probes"], ben["consistent"]) == (30, 28)
    assert (ann["probes"], ann["consistent"]) == (29, 29)
    assert cat["others_consistency"] == round((29 + 28) / (29 + 30), 4)
    assert cat["test"]["flagged"] and not ben["test"]["flagged"] and not ann["test"]["flagged"]
    assert cat["test"]["correction"] == "Holm over 3 tests"
    assert cat["test"]["random_clicker_min_probes"] >= MIN_PROBES
    assert (report["repeat"]["probes"], report["repeat"]["consistent"]) == (89, 66)
    assert "sides swapped" in report["repeat"]["meaning"]
    # Judgments, agreement: the probes are in none of them.
    assert report["counts"]["judgments"] == 90


def test_the_dashboard_shows_the_column_and_flags_the_inconsistent(client, bob, planted):
    client.force_login(bob)
    page = html_module.unescape(client.get("/lead/p/demo/").content.decode())
    assert ">Repeats<" in page and 'data-testid="repeats"' in page
    assert "inconsistent repeats</strong>: answered 9 of 30 comparisons shown again" in page
    assert page.count("inconsistent repeats</strong>") == 1
    assert "a random clicker is flagged after" in page
    assert "<dt>inconsistent repeats</dt>" in page


def test_a_batch_filter_keeps_the_batchs_probes(api, bob, planted, import_rows):
    other = import_rows(prompt_line("p-other", n=3))
    [batch] = Batch.objects.exclude(pk=other.pk)
    report = api(bob).get(STATS, {"batch": batch.pk}).json()
    assert report["repeat"]["probes"] == 89
    report = api(bob).get(STATS, {"batch": other.pk}).json()
    assert report["repeat"]["probes"] == 0


def test_the_card_has_one_line_for_them(api, bob, annotators, planted):
    response = api(bob).get(reverse("api-export", args=["demo"]), {"format": "card"})
    assert response.status_code == 200, response.content
    card = response.content.decode()
    (line,) = [row for row in card.splitlines() if row.startswith("Repeat consistency:")]
    assert line.startswith("Repeat consistency: 66 of 89 consistency probes answered as the")
    cat = next(user for user in annotators if user.username == "cat")
    assert f"{planted[cat.pk]} 9 of 30 (flagged)" in line
    assert line.count("(flagged)") == 1 and "sides swapped" in line
    assert not re.search(r"\b(ann|ben|cat)\b(?!-)", line)  # pseudonyms, never usernames


def test_without_answered_probes_the_card_says_nothing_of_them(api, bob, project):
    response = api(bob).get(reverse("api-export", args=["demo"]), {"format": "card"})
    assert "Repeat consistency" not in response.content.decode()
