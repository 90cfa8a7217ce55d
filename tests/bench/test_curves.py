"""bench/curves.py, the reading of two policies' tau curves that bench/quality.py and
bench/policy_sim.py print: hand-computed cases."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from curves import (
    bootstrap,
    main,
    mean_curve,
    median_saving,
    reach_line,
    reached_at,
    read_curves,
    saving,
    tau_reach,
    write_curves,
)


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


def test_mean_curve_averages_the_seeds_and_ends_at_the_shortest():
    # The second seed stopped 3 judgments short: its own last tau stands in at 300.
    curves = [{100: 0.5, 200: 0.7, 300: 0.9}, {100: 0.7, 200: 0.9, 297: 1.0}]
    assert mean_curve(curves) == {
        100: pytest.approx(0.6),
        200: pytest.approx(0.8),
        297: pytest.approx(0.95),
    }


def test_curves_files_merge_their_seeds_and_refuse_a_seed_twice(tmp_path):
    first, second, again = (tmp_path / f"{n}.json" for n in ("first", "second", "again"))
    setup = {"budget": 300}
    write_curves(str(first), "quality", setup, {"random": {1: {100: 0.5}}, "uf": {1: {100: 0.6}}})
    write_curves(str(second), "quality", setup, {"random": {2: {100: 0.7}}, "uf": {2: {100: 0.8}}})
    merged = read_curves([str(first), str(second)])
    assert merged == {
        "random": {1: {100: 0.5}, 2: {100: 0.7}},
        "uf": {1: {100: 0.6}, 2: {100: 0.8}},
    }
    write_curves(str(again), "quality", setup, {"random": {2: {100: 0.7}}})
    with pytest.raises(SystemExit, match="seed 2 of 'random' is in an earlier file"):
        read_curves([str(first), str(second), str(again)])
    write_curves(str(again), "quality", {"budget": 600}, {"random": {3: {100: 0.7}}})
    with pytest.raises(SystemExit, match="another setup"):
        read_curves([str(first), str(again)])


def test_the_bootstrap_resamples_seeds_alike_for_both_policies():
    # Seed 1: the policy reaches each of random's taus with half the judgments (50% saved);
    # seed 2: with as many (none saved). A resample draws the same seeds for both.
    reference = {1: {100: 0.5, 200: 0.9, 300: 1.0}, 2: {100: 0.5, 200: 0.9, 300: 1.0}}
    curves = {1: {100: 0.9, 200: 1.0, 300: 1.0}, 2: {100: 0.5, 200: 0.9, 300: 1.0}}
    assert saving([reference[1]], [curves[1]]) > saving([reference[2]], [curves[2]]) == 0
    resampled = bootstrap(reference, curves, 200, random.Random(1))
    assert len(resampled) == 200 and resampled == sorted(resampled)
    assert resampled[0] == saving([reference[2]] * 2, [curves[2]] * 2)
    assert resampled[-1] == saving([reference[1]] * 2, [curves[1]] * 2)


def test_the_script_prints_the_saving_its_interval_and_groups(tmp_path, capsys):
    path = tmp_path / "c.json"
    reference = {s: {100: 0.5, 200: 0.9, 300: 1.0} for s in (1, 2, 3, 4)}
    faster = {s: {100: 0.9, 200: 1.0, 300: 1.0} for s in (1, 2, 3, 4)}
    write_curves(
        str(path),
        "quality",
        {},
        {"random / bradley_terry": reference, "uncertain_first / bradley_terry": faster},
    )
    main([str(path), "--resamples", "50", "--groups", "2"])
    out = capsys.readouterr().out
    assert "uncertain_first / bradley_terry against random / bradley_terry, 4 seeds (1-4)" in out
    # Random's 0.5 at 100 is reached at 55.6, its 0.9 at 200 at 100: 44% and 50% saved.
    assert "median saving 47%" in out
    assert "95% interval 47% to 47%; at or above 25% in 100% of resamples" in out
    assert "groups of 2 seeds: 1-2 47%, 3-4 47%" in out
