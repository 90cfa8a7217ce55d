"""Left bias as a test against the crowd model (apps/agreement/crowd_bias.py and
flags.left_bias_tests): hand-computed tails and chances, the flag firing and not firing, and the
planted annotators of the crowd simulation."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from apps.agreement.crowd import fit_crowd
from apps.agreement.crowd_bias import left_bias, left_chances
from apps.agreement.crowd_steps import LEFT, RIGHT
from apps.agreement.flags import (
    always_left_min_choices,
    left_bias_tests,
    p_left_beyond_expected,
)
from apps.agreement.weighted_bt import annotator_weights, weighted_strengths
from tests.agreement.test_crowd import votes_of
from tests.agreement.test_crowd_votes import KINDS, simulate


def test_the_tail_by_hand():
    # Chances 0.2 and 0.5: two lefts 0.2 * 0.5 = 0.1; at least one 1 - 0.8 * 0.5 = 0.6.
    chances = np.array([0.2, 0.5])
    assert p_left_beyond_expected(2, chances) == pytest.approx(0.1)
    assert p_left_beyond_expected(1, chances) == pytest.approx(0.6)
    assert p_left_beyond_expected(0, chances) == pytest.approx(1.0)
    assert p_left_beyond_expected(3, chances) == 0.0
    assert p_left_beyond_expected(0, np.zeros(0)) == 1.0
    # Equal chances: the binomial tail.
    half = np.full(40, 0.5)
    assert p_left_beyond_expected(27, half) == pytest.approx(
        binomtest(27, 40, 0.5, alternative="greater").pvalue
    )


def test_the_tail_is_the_poisson_binomial_one():
    # Chances spread around their mean 0.5 (0.1 and 0.9 alternating): the exact tail of their
    # sum by convolution, far smaller than the binomial's at the mean (their sum varies less).
    chances = np.tile([0.1, 0.9], 10)
    mass = np.array([1.0])
    for p in chances:
        mass = np.convolve(mass, [1 - p, p])
    for left in range(0, 21):
        assert p_left_beyond_expected(left, chances) == pytest.approx(mass[left:].sum(), abs=1e-12)
    assert (
        p_left_beyond_expected(14, chances) < binomtest(14, 20, 0.5, alternative="greater").pvalue
    )


def test_many_votes_take_the_normal_tail(monkeypatch):
    from apps.agreement import flags

    rng = np.random.default_rng(3)
    chances = rng.uniform(0.2, 0.8, 400)
    exact = p_left_beyond_expected(220, chances)
    monkeypatch.setattr(flags, "EXACT_TAIL_MAX", 100)
    assert p_left_beyond_expected(220, chances) == pytest.approx(exact, rel=0.05)


def test_the_evidence_an_always_left_clicker_needs_by_hand():
    # Chances one half: 0.5^n < 0.01 / 9 from n = 10 (2^10 = 1024 > 900 > 512 = 2^9).
    assert always_left_min_choices(np.full(30, 0.5), 0.01 / 9) == 10
    # Chances 0.25: 0.25^n < 0.001 from n = 5 (4^5 = 1024).
    assert always_left_min_choices(np.full(30, 0.25), 0.001) == 5
    # Chances 0.25 and 1 alternating: the geometric mean is 0.5, as above.
    assert always_left_min_choices(np.tile([0.25, 1.0], 15), 0.01 / 9) == 10
    assert always_left_min_choices(np.zeros(0), 0.01) is None
    assert always_left_min_choices(np.ones(3), 0.01) is None  # the model expects left always


def test_the_expected_share_is_the_models_not_one_half():
    # An annotator whose comparisons put the stronger response on the left (chance 0.8) and
    # who chose left 40 times in 50 is as the model expects: not flagged, where a binomial test
    # against one half would flag them (p < 1e-4).
    assert binomtest(40, 50, 0.5, alternative="greater").pvalue < 1e-4
    fair, clicker = left_bias_tests([40, 20], [np.full(50, 0.8), np.full(20, 0.5)])
    assert fair is not None and clicker is not None
    assert not fair["flagged"] and fair["expected"] == 0.8 and fair["left_share"] == 0.8
    # The always-left clicker: p = 0.5^20; Holm over 2 tests multiplies the smaller by 2.
    assert clicker["flagged"]
    assert clicker["p_value"] == pytest.approx(0.5**20, rel=1e-3)
    assert clicker["p_holm"] == pytest.approx(2 * 0.5**20, rel=1e-3)
    assert clicker["n"] == 20 and clicker["correction"] == "Holm over 2 tests"
    # Bonferroni level 0.01 / 2: 2^n > 200 from n = 8.
    assert clicker["min_evidence"] == 8
    assert left_bias_tests([0], [np.zeros(0)]) == [None]


def test_few_choices_are_not_enough():
    # Five lefts out of five at one half: p = 1/32 > 0.01, not flagged.
    (test,) = left_bias_tests([5], [np.full(5, 0.5)])
    assert test is not None and not test["flagged"]
    assert test["p_value"] == pytest.approx(1 / 32)


def test_the_left_chances_by_hand():
    # Strengths ln 3 apart: A beats B 3 times in 4 given a side was chosen. A on the left gives
    # the left side 0.75, on the right 0.25; a comparison of unknown models one half.
    rows = [(0, 0, LEFT, 1), (1, 0, RIGHT, 0)] * 20 + [(2, 1, LEFT, 1)]
    models = np.array([(0, 1), (0, 1), (-1, -1)])
    votes = votes_of(rows, models=models, model_names=["m0", "m1"])
    # Strengths ln 3 apart, by hand, to check the arithmetic.
    strength = np.array([math.log(3) / 2, -math.log(3) / 2])
    chances = left_chances(votes, strength)
    np.testing.assert_allclose(chances[:2], [0.75, 0.25])
    assert chances[-1] == 0.5
    # A model without a strength (NaN) counts one half too.
    assert (left_chances(votes, np.array([np.nan, 0.0])) == 0.5).all()


@pytest.fixture(scope="module")
def planted():
    fitted = []
    for votes, _ in (simulate(s, comparisons=2000) for s in (0, 1)):
        fit = fit_crowd(votes)
        fitted.append((votes, fit, weighted_strengths(votes, annotator_weights(fit.reliability))))
    return fitted


def test_the_planted_always_left_clicker_is_flagged_and_the_honest_are_not(planted):
    for votes, fit, board in planted:
        tests = dict(zip(fit.annotators, left_bias(votes, board.strength), strict=True))
        for name, test in tests.items():
            assert test is not None
            kind = KINDS[int(name.rsplit("-", 1)[1])]
            if kind in ("honest", "random"):
                assert not test["flagged"], name
                assert abs(test["left_share"] - test["expected"]) < 0.06
            if kind in ("always_left", "left_biased"):
                assert test["flagged"], name
        assert tests[f"always_left-{KINDS.index('always_left')}"]["left_share"] == 1.0
