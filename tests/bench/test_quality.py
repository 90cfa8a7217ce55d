"""bench/quality.py's planted annotators on a honeypot (a response against a degraded copy of
it): how the client tells the sides apart, and how each kind answers, against hand-computed
probabilities."""

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import quality
from quality import DEGRADED, MODELS, choose, is_honeypot, sides

TRUTH = {"a1": "model-1", "b8": "model-8"}


def lease(left: str, right: str) -> dict:
    return {"id": 7, "left": {"id": left}, "right": {"id": right}}


def test_an_ordinary_lease_reads_both_models():
    assert sides(TRUTH, lease("a1", "b8")) == (MODELS["model-1"], MODELS["model-8"])
    assert not is_honeypot(TRUTH, lease("a1", "b8"))


def test_a_honeypots_degraded_side_is_its_source_less_degraded_on_either_side():
    strong = MODELS["model-8"]
    assert sides(TRUTH, lease("b8", "hp-x")) == (strong, strong - DEGRADED)
    assert sides(TRUTH, lease("hp-x", "b8")) == (strong - DEGRADED, strong)
    assert is_honeypot(TRUTH, lease("b8", "hp-x")) and is_honeypot(TRUTH, lease("hp-x", "b8"))


def test_a_lease_of_two_unknown_sides_is_an_error():
    with pytest.raises(quality.common.BenchError, match="neither side"):
        sides(TRUTH, lease("hp-x", "hp-y"))


def right_share(kind: str, draws: int = 4000) -> float:
    """The share of honeypots answered right, the degraded side drawn left or right evenly."""
    rng = random.Random(5)
    right = 0
    for i in range(draws):
        degraded_left = i % 2 == 0
        pair = lease("hp-x", "a1") if degraded_left else lease("a1", "hp-x")
        left, right_side = sides(TRUTH, pair)
        answer = choose(kind, left, right_side, rng)
        right += answer == ("right" if degraded_left else "left")
    return right / draws


def test_honest_and_left_biased_annotators_see_the_degraded_side_lose_98_percent():
    expected = 1 / (1 + math.exp(-DEGRADED))  # 0.982: no tie, no left bias at this gap
    assert expected == pytest.approx(0.982, abs=5e-4)
    for kind in ("honest", "left_biased"):
        assert right_share(kind) == pytest.approx(expected, abs=0.01)


def test_the_random_clicker_is_right_half_the_time_and_always_left_exactly_half():
    assert right_share("random") == pytest.approx(0.5, abs=0.03)
    assert right_share("always_left") == 0.5
