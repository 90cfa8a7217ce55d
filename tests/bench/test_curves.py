"""bench/curves.py, the reading of two policies' tau curves that bench/quality.py and
bench/policy_sim.py print: hand-computed cases."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from curves import median_saving, reach_line, reached_at, tau_reach


def test_reached_at_reads_the_line_between_checkpoints():
    curve = {150: 0.6, 300: 0.8, 450: 0.9}
    assert reached_at(curve, 0.7) == pytest.approx(225)
    assert reached_at(curve, 0.8) == pytest.approx(300)
    assert reached_at(curve, 0.85) == pytest.approx(375)
    # Before the first checkpoint: from no judgments and tau 0.
    assert reached_at(curve, 0.3) == pytest.approx(75)
    assert reached_at(curve, 0.95) is None


def test_reached_at_takes_the_first_crossing_of_a_curve_that_dips():
    curve = {100: 0.5, 200: 0.9, 300: 0.7, 400: 0.95}
    assert reached_at(curve, 0.8) == pytest.approx(175)
    # A curve that starts above the tau: the first checkpoint, read from (0, 0).
    assert reached_at({100: 1.0}, 0.5) == pytest.approx(50)


def test_tau_reach_and_its_median_saving():
    reference = {100: 0.5, 200: 0.7, 300: 0.8, 400: 0.8}
    faster = {100: 0.6, 200: 0.8, 300: 0.8}
    reached = tau_reach(reference, faster)
    # Checkpoints at the reference's best (0.8) are left out: every policy gets there.
    assert [n for n, _, _ in reached] == [100, 200]
    assert reached[0][2] == pytest.approx(100 * 0.5 / 0.6)
    assert reached[1][2] == pytest.approx(100 + 100 * 0.1 / 0.2)
    # Savings 1 - 83.3/100 and 1 - 150/200: median of the two.
    assert median_saving(reached) == pytest.approx(((1 - 0.5 / 0.6) + 0.25) / 2)
    line = reach_line(reached)
    assert line.startswith("100->83 (-17%), 200->150 (-25%)")
    assert line.endswith("median saving 21%")


def test_a_tau_never_reached_counts_as_no_saving():
    reached = tau_reach({100: 0.5, 200: 0.9, 300: 0.95}, {100: 0.4, 200: 0.6})
    assert [m for _, _, m in reached] == [pytest.approx(150), None]
    # Half as many judgments again (-50%) and no saving: the median is between them.
    assert median_saving(reached) == pytest.approx(-0.25)
    assert "200->-" in reach_line(reached)
    assert reach_line([]) == "no checkpoint below the reference's best"
