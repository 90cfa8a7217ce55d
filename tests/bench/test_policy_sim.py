"""bench/policy_sim.py's gold items: the gold rule on hand-computed cases, and a run with gold
still spending its budget and reading its curve at every checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from policy_sim import gold_paused, play, steps


def test_the_gold_rule_waits_for_twenty_answers_then_wants_eighty_percent():
    assert not gold_paused(19, 0)  # too few answers to judge
    assert gold_paused(20, 15)  # 75%
    assert not gold_paused(20, 16)
    assert gold_paused(40, 31)  # 77.5%
    assert not gold_paused(40, 32)


def test_gold_judgments_count_toward_the_budget_and_the_curve():
    curve = play(3, 3.0, "uncertain_first", 600, steps, pool=400, gold=0.3)
    assert sorted(curve) == [150, 300, 450, 600]
    assert all(-1 <= tau <= 1 for tau in curve.values())


def test_without_gold_a_run_is_what_it_was():
    plain = play(4, 3.0, "random", 450, None, pool=300)
    assert play(4, 3.0, "random", 450, None, pool=300, gold=0.0) == plain
    assert play(4, 3.0, "random", 450, None, pool=300, gold=0.2) != plain
