"""The flags from tests: planted annotators in seeded simulated votes (pure, through the
functions the dashboard uses), and the adaptive sample on the page and in /stats/."""

import html as html_module

import numpy as np
import pytest

from apps.agreement.flags import Design
from apps.agreement.stats import Vote, annotator_summaries
from apps.dashboard.figures import project_figures
from apps.dashboard.outliers import outlier_flags
from tests.agreement.test_stats import judged, stats  # noqa: F401 (a fixture)

HONEST = [f"honest-{i}" for i in range(1, 6)]
PLANTED = {**dict.fromkeys(HONEST, "honest"), "random": "random", "always-left": "left"}
PLANTED["left-biased"] = "biased"
# Eight models 100 Elo points apart: neighbours are close (64:36), the ends far apart (99:1).
ELO = np.linspace(1000, 1700, 8)
LEFT_RIGHT = Design(policy="random", clicker=(0.5, 0.5, 0.0, 0.0))
ADAPTIVE = Design(policy="uncertain_first", clicker=(0.5, 0.5, 0.0, 0.0))


def choose(kind, rng, p_a, a_on_left):
    """Whether this kind of annotator chooses candidate A."""
    if kind == "random":
        return (rng.random() < 0.5) == a_on_left
    if kind == "left":
        return a_on_left
    if kind == "biased" and rng.random() < 0.6:  # unsure, 60% of the time: left 3 times in 4
        return (rng.random() < 0.75) == a_on_left
    return rng.random() < p_a  # honest: the true Bradley-Terry chance


def simulate(seed, *, comparisons=2500, overlap=3):
    """About 940 votes per annotator (3 of 8 on each comparison), and 20 gold answers each:
    honest ones get 19 right, the random clicker 10."""
    rng = np.random.default_rng(seed)
    names = list(PLANTED)
    votes = []
    for c in range(comparisons):
        i, j = rng.choice(len(ELO), 2, replace=False)
        p_a = 1 / (1 + 10 ** ((ELO[j] - ELO[i]) / 400))
        for name in rng.choice(names, overlap, replace=False):
            a_on_left = bool(rng.random() < 0.5)
            a = choose(PLANTED[str(name)], rng, p_a, a_on_left)
            votes.append(vote(c, str(name), a, a_on_left, f"model-{i}", f"model-{j}"))
    for name in names:
        right = 10 if PLANTED[name] == "random" else 19
        for g in range(20):
            votes.append(vote(10_000 + g, name, True, True, "", "", gold=g < right))
    return votes


def vote(comparison, name, a, a_on_left, model_a, model_b, *, gold=None):
    return Vote(
        comparison=comparison,
        annotator=name,
        option="a" if a else "b",
        side="left" if a == a_on_left else "right",
        strength=None,
        model_a=model_a,
        model_b=model_b,
        is_gold=gold is not None,
        gold_correct=gold,
        duration_ms=10_000,
    )


def flags(votes, design):
    """Each annotator's flags, as the dashboard raises them."""
    return {
        summary["annotator"]: [
            flag["flag"]
            for flag in outlier_flags(
                summary, project_median_ms=10_000, gold_min_accuracy=0.7, gold_min_answers=20
            )
        ]
        for summary in annotator_summaries(votes, design=design)
    }


@pytest.mark.parametrize("seed", range(3))
def test_every_planted_spammer_is_flagged_and_no_honest_annotator(seed):
    votes = simulate(seed)
    raised = flags(votes, LEFT_RIGHT)
    assert all(raised[name] == [] for name in HONEST), raised
    assert "low agreement" in raised["random"] and "below gold" in raised["random"]
    assert "left bias" in raised["always-left"]
    # 75% left when unsure (a left share near 65%), over about 940 votes: flagged for the bias
    # at 99% with Holm's correction (a few hundred are not always enough).
    assert "left bias" in raised["left-biased"]
    summaries = {s["annotator"]: s for s in annotator_summaries(votes, design=LEFT_RIGHT)}
    assert 800 < summaries["left-biased"]["position_bias"]["side_choices"] < 1100
    assert summaries["left-biased"]["position_bias"]["project_left_share"] == pytest.approx(
        0.5, abs=0.05
    )
    assert summaries["random"]["agreement_test"]["chance"] == 0.5


@pytest.mark.parametrize("seed", range(2))
def test_under_an_adaptive_policy_agreement_raises_no_flag_and_gold_still_does(seed):
    votes = simulate(seed)
    raised = flags(votes, ADAPTIVE)
    assert all("low agreement" not in found for found in raised.values())
    assert raised["random"] == ["below gold"]
    assert "left bias" in raised["always-left"] and "left bias" in raised["left-biased"]
    for summary in annotator_summaries(votes, design=ADAPTIVE):
        assert summary["agreement_test"] is None
        assert summary["agreement_with_others_sample"] == "adaptive"
        assert "not meaningful" in summary["agreement_with_others_note"]
        assert summary["agreement_with_others"] is not None  # reported, labelled


def test_the_dashboard_tests_agreement_under_a_fixed_policy(judged):  # noqa: F811
    figures = project_figures(judged)
    assert figures["agreement_sample"] == {"sample": "all", "note": None}
    rules = figures["flag_rules"]
    assert (rules["confidence"], rules["bias_margin"], rules["adaptive"]) == (0.99, 0.05, False)
    # Left, right, tie and both bad allowed: a clicker matches any majority one time in four.
    assert rules["chance"] == 0.25
    for row in figures["annotators"]:
        assert row["agreement_with_others_sample"] == "all"
        assert row["agreement_with_others_note"] is None
        assert row["agreement_test"]["chance"] == 0.25
        assert not row["agreement_test"]["flagged"]  # 1 to 3 comparisons prove nothing


def test_the_dashboard_says_agreement_is_not_meaningful_under_uncertain_first(
    client,
    bob,
    judged,  # noqa: F811
):
    judged.policy = "uncertain_first"
    judged.save(update_fields=["policy"])
    judged.refresh_from_db()
    figures = project_figures(judged)
    assert figures["agreement_sample"]["sample"] == "adaptive"
    assert figures["flag_rules"]["adaptive"] is True
    assert all(row["agreement_test"] is None for row in figures["annotators"])
    assert all(row["agreement_with_others_note"] for row in figures["annotators"])
    client.force_login(bob)
    page = html_module.unescape(client.get("/lead/p/demo/").content.decode())
    assert 'data-testid="agreement-sample"' in page
    assert "Sample: adaptive." in page
    assert "not meaningful (adaptive sample)" in page
    assert (
        "not raised: agreement with the others is not meaningful: under the uncertain_first" in page
    )
    assert "an audit sample, set in the project, would make it testable" in page


def test_the_page_states_each_tested_rule(client, bob, judged):  # noqa: F811
    client.force_login(bob)
    page = html_module.unescape(client.get("/lead/p/demo/").content.decode())
    assert 'data-testid="agreement-sample"' not in page
    assert "one-sided exact binomial test" in page and "one-sided Fisher exact test" in page
    assert "at 99% confidence with Holm's correction" in page
    assert "significantly more than 5%" in page and "unreliable" in page
    assert "too fast" in page and "timed judgments" in page


def test_stats_says_which_sample_agreement_comes_from(api, bob, judged):  # noqa: F811
    report = stats(api, bob)
    assert (report["agreement"]["sample"], report["agreement"]["sample_note"]) == ("all", None)
    for entry in report["annotators"]:
        assert entry["agreement_with_others_sample"] == "all"
        assert entry["agreement_test"]["chance"] == 0.25
        assert entry["position_bias"]["project_left_share"] is not None
    judged.policy = "uncertain_first"
    judged.save(update_fields=["policy"])
    report = stats(api, bob)
    assert report["agreement"]["sample"] == "adaptive"
    assert "uncertain_first" in report["agreement"]["sample_note"]
    for entry in report["annotators"]:
        assert entry["agreement_with_others_sample"] == "adaptive"
        assert entry["agreement_test"] is None
        assert "not meaningful" in entry["agreement_with_others_note"]
