"""bench/policy_ceiling.py, the most an order of comparisons could save in the cleanest case:
hand-computed cases."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from policy_ceiling import ceiling, misordered, reached_at, strengths


def test_two_models_one_pair_by_hand():
    # One pair 1.0 apart: win chance p = 1/(1 + e^-1); n votes carry n p (1 - p), so the
    # difference's error is 1/sqrt(n p (1 - p)) and it is misordered with chance Phi(-1/error).
    strength = strengths(2, 1.0)
    assert list(strength) == [-0.5, 0.5]
    p = 1 / (1 + math.exp(-1.0))
    expected = norm.cdf(-1.0 * math.sqrt(100 * p * (1 - p)))
    assert misordered(strength, np.array([1.0]), 100) == pytest.approx(expected)
    # With one pair there is nothing to choose: the best spread is the uniform one.
    target, needed, neighbours = ceiling(strength, 100)
    assert target == pytest.approx(expected)
    assert needed == pytest.approx(100, rel=1e-6)
    assert neighbours == pytest.approx(1.0)


def test_reached_at_inverts_misordered():
    strength = strengths(3, 2.0)
    share = np.full(3, 1 / 3)
    target = misordered(strength, share, 200)
    assert reached_at(strength, share, target, 400) == pytest.approx(200, rel=1e-4)


def test_the_best_spread_favours_neighbours_and_never_needs_more():
    strength = strengths(4, 3.0)
    target, needed, neighbours = ceiling(strength, 300)
    assert 0 < needed < 300
    # Far pairs are ordered by little: most of the best spread goes to the 3 of 6 pairs that
    # are neighbours, where the uniform spread gives them half.
    assert neighbours > 0.5
    share_needed = misordered(strength, np.full(6, 1 / 6), 300)
    assert share_needed == pytest.approx(target)


def test_a_model_without_votes_leaves_its_pairs_to_chance():
    # Votes on pair (0, 1) only: model 2 is joined to nothing, so its two pairs are a coin
    # flip each (a pseudo-inverse would have called them certain).
    strength = strengths(3, 2.0)
    p = 1 / (1 + math.exp(-1.0))
    alone = norm.cdf(-1.0 * math.sqrt(100 * p * (1 - p)))
    assert misordered(strength, np.array([1.0, 0.0, 0.0]), 100) == pytest.approx(
        alone + 1.0, abs=1e-3
    )
