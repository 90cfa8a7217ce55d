"""The tests behind the annotator flags, by hand: exact binomial and Fisher p-values summed from
binomial coefficients, Holm's correction step by step, the evidence a random clicker needs."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from apps.agreement.flags import (
    CONFIDENCE,
    MIN_RUN,
    Design,
    agreement_tests,
    bias_bounds,
    bias_tests,
    min_comparisons,
    p_below_chance,
    p_below_other,
    p_share_above,
)
from apps.projects.models import Project


def binomial_below(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p), exactly."""
    p = Fraction(p)
    return float(sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)))


def fisher_below(a, n, b, m):
    """One-sided Fisher: P(at most a of the a + b agreements fall among the first n of n + m)."""
    total = comb(n + m, a + b)
    return sum(comb(n, i) * comb(m, a + b - i) for i in range(a + 1)) / total


def holm(p_values):
    """Holm's step-down adjusted p-values, written out."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - step) * p_values[i]))
        adjusted[i] = running
    return adjusted


def test_the_p_values_are_exact():
    assert p_below_chance(30, 100, 0.5) == pytest.approx(binomial_below(30, 100, 0.5), rel=1e-9)
    assert p_below_chance(30, 100, 0.5) == pytest.approx(3.925e-05, rel=1e-3)
    assert p_below_chance(47, 100, 0.5) == pytest.approx(binomial_below(47, 100, 0.5), rel=1e-9)
    assert p_below_other(47, 100, 80, 100) == pytest.approx(fisher_below(47, 100, 80, 100))
    # Three perfect votes of the other prove little against 19 of 20.
    assert p_below_other(19, 20, 3, 3) == pytest.approx(fisher_below(19, 20, 3, 3))
    assert p_below_other(19, 20, 3, 3) > 0.5


def test_30_of_100_is_flagged_and_47_of_100_at_chance_is_not():
    # Chance 1/2 (left or right only). The median other of 30 is 47 (of 47 and 48), of 47 it is
    # 30 (of 30 and 48, the lower).
    tests = agreement_tests([30, 47, 48], [100] * 3, [0.5] * 3)
    p_values = []
    for a, others in ((30, (47, 48)), (47, (30, 48)), (48, (30, 47))):
        p_values += [binomial_below(a, 100, 0.5), fisher_below(a, 100, min(others), 100)]
    adjusted = holm(p_values)
    for i, test in enumerate(tests):
        assert test["p_chance"] == pytest.approx(p_values[2 * i], rel=1e-3)
        assert test["p_others"] == pytest.approx(p_values[2 * i + 1], rel=1e-3)
        assert test["p_chance_holm"] == pytest.approx(adjusted[2 * i], rel=1e-3)
        assert test["p_others_holm"] == pytest.approx(adjusted[2 * i + 1], rel=1e-3)
        assert test["correction"] == "Holm over 6 tests"
        assert test["confidence"] == CONFIDENCE == 0.99
    assert [t["flagged"] for t in tests] == [True, False, False]
    assert tests[0]["p_chance_holm"] < 0.01 < tests[1]["p_chance_holm"]
    assert [t["others_median"] for t in tests] == [0.47, 0.3, 0.3]


def test_below_the_honest_population_is_flagged_even_above_chance():
    # A clicker at 52% among annotators agreeing 78-82%: not below chance, far below the others.
    tests = agreement_tests([104, 78, 80, 82], [200, 100, 100, 100], [0.5] * 4)
    clicker, *honest = tests
    assert clicker["p_chance"] > 0.5 and clicker["p_others_holm"] < 0.01
    assert clicker["flagged"] and not any(t["flagged"] for t in honest)
    assert (clicker["others_median"], clicker["others_median_comparisons"]) == (0.8, 100)
    # Few comparisons are not evidence: 2 of 5 is not flagged.
    assert not agreement_tests([2, 78, 80, 82], [5, 100, 100, 100], [0.5] * 4)[0]["flagged"]
    # Without a counted comparison there is nothing to test.
    assert agreement_tests([0, 8], [0, 10], [None, 0.5])[0] is None


def flagged_at(n, chance, other, alpha):
    return fisher_below(-(-chance.numerator * n // chance.denominator), n, *other) < alpha


def test_the_evidence_a_random_clicker_needs():
    # A clicker at 1/2 beside a median other of 80 of 100, at the Bonferroni level of 8 tests.
    alpha = 0.01 / 8
    needed = min_comparisons(0.5, 80, 100, alpha)
    chance = Fraction(1, 2)
    assert not flagged_at(needed - 1, chance, (80, 100), alpha)
    assert all(flagged_at(n, chance, (80, 100), alpha) for n in range(needed, needed + MIN_RUN))
    assert needed == 36
    # More evidence of the other's rate, fewer comparisons needed; a thin one is never enough
    # (a clicker's 1/2 cannot be told from 3 of 3 at any length).
    assert min_comparisons(0.5, 800, 1000, alpha) < needed
    assert min_comparisons(0.5, 3, 3, alpha) is None
    # In the tests' output: none when chance is not below the median other.
    assert (
        agreement_tests([50, 40, 45], [100] * 3, [0.5] * 3)[1]["random_clicker_min_comparisons"]
        is None
    )


def test_chance_is_a_clicker_pressing_the_projects_buttons_alike():
    def clicker(**fields):
        return Design.of(Project(**fields)).clicker

    assert clicker() == (0.25, 0.25, 0.25, 0.25)
    assert clicker(allow_tie=False, allow_both_bad=False) == (0.5, 0.5, 0.0, 0.0)
    assert clicker(allow_both_bad=False) == pytest.approx((1 / 3, 1 / 3, 1 / 3, 0))
    assert clicker(scheme="graded") == (3 / 8, 3 / 8, 1 / 8, 1 / 8)
    assert clicker(scheme="graded", allow_both_bad=False) == pytest.approx((3 / 7, 3 / 7, 1 / 7, 0))


def test_only_an_adaptive_policy_makes_agreement_not_meaningful():
    for policy in ("breadth_first", "depth_first", "random"):
        design = Design.of(Project(policy=policy))
        assert (design.adaptive, design.sample, design.note) == (False, "all", None)
    design = Design.of(Project(policy="uncertain_first"))
    assert (design.adaptive, design.sample) == (True, "adaptive")
    assert design.note is not None and "uncertain_first" in design.note


def test_a_bias_is_beyond_both_one_half_and_the_projects_share_by_the_margin():
    assert bias_bounds(0.5) == pytest.approx((0.45, 0.55))
    assert bias_bounds(0.6) == pytest.approx((0.45, 0.65))  # the project leans left
    assert bias_bounds(0.4) == pytest.approx((0.35, 0.55))  # ... or right
    assert bias_bounds(None) == pytest.approx((0.45, 0.55))
    assert bias_bounds(0.98) == pytest.approx((0.45, 1.0))


def test_the_bias_tests_are_exact_and_holm_corrected():
    assert p_share_above(70, 100, 0.55) == pytest.approx(
        1 - binomial_below(69, 100, 0.55), rel=1e-9
    )
    left, sides, shares = [70, 50, 20, 0], [100, 100, 100, 0], [0.5, 0.5, 0.5, None]
    raw = []
    for k, n in zip(left[:3], sides[:3], strict=True):
        raw += [1 - binomial_below(k - 1, n, 0.55), 1 - binomial_below(n - k - 1, n, 0.55)]
    adjusted = holm(raw)
    tests = bias_tests(left, sides, shares)
    assert tests[3] is None
    for i, test in enumerate(tests[:3]):
        assert test["p_left_holm"] == pytest.approx(adjusted[2 * i], rel=1e-3)
        assert test["p_right_holm"] == pytest.approx(adjusted[2 * i + 1], rel=1e-3)
        assert test["correction"] == "Holm over 6 tests"
        assert test["bounds"] == [0.45, 0.55]
    assert [t["side"] for t in tests[:3]] == ["left", None, "right"]
    # The project's lean moves the bound: 70 of 100 beside a project at 68% is no bias.
    assert bias_tests([70, 68], [100, 100], [0.68, 0.7])[0]["side"] is None


# bench/quality.py's plant: eight models 3/7 natural-log units apart; the left-biased annotator,
# when unsure (the two models less than 1 apart), clicks left 3 times in 4.
STRENGTHS = np.linspace(-1.5, 1.5, 8)


def left_choices(rng, votes, *, biased):
    """How many of `votes` choices of a side went left."""
    i = rng.integers(0, 8, votes)
    j = (i + rng.integers(1, 8, votes)) % 8
    diff = STRENGTHS[i] - STRENGTHS[j]
    a_left = rng.random(votes) < 0.5
    chose_a = rng.random(votes) < 1 / (1 + np.exp(-diff))
    left = chose_a == a_left
    if biased:
        left = np.where(np.abs(diff) < 1.0, rng.random(votes) < 0.75, left)
    return int(left.sum())


@pytest.mark.parametrize("seed", range(6))
def test_no_honest_annotator_is_flagged_for_bias_and_the_left_biased_one_is(seed):
    """12 honest annotators with 30 to 3,000 choices each (a few are short, where a 95% interval
    uncorrected over annotators flags one in a few dozen) and the left-biased one with 3,000:
    its left share is only about 62% (unsure in 26 pairs of models of 56), so beside a project
    share that the honest annotators' noise moves by a point or two it takes a few thousand."""
    rng = np.random.default_rng(seed)
    sides = [int(n) for n in rng.integers(30, 3000, 12)] + [3000]
    left = [left_choices(rng, n, biased=k == 12) for k, n in enumerate(sides)]
    shares = [k / n for k, n in zip(left, sides, strict=True)]
    project = [float(np.median(shares[:k] + shares[k + 1 :])) for k in range(13)]
    tests = bias_tests(left, sides, project)
    assert [t["side"] for t in tests[:12]] == [None] * 12
    assert tests[12]["side"] == "left"
