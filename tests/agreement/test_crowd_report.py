"""The crowd model's part of /stats/: the variant it picks, the per-annotator figures, the
"unreliable" test and the crowd leaderboard on the Bradley-Terry leaderboard's scale."""

import dataclasses
import math

import numpy as np
import pytest

from apps.agreement.crowd import fit_crowd
from apps.agreement.crowd_report import crowd_report
from apps.agreement.crowd_steps import TIE
from apps.agreement.stats import project_stats
from tests.agreement.test_crowd import as_columns, votes_of
from tests.agreement.test_crowd_votes import KINDS, simulate
from tests.agreement.test_stats import judged, stats  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def planted():
    votes, truth = simulate(0, comparisons=6000)
    return votes, truth, project_stats(as_columns(votes))


def test_each_annotator_gets_the_fits_reliability_and_bias(planted):
    votes, _, report = planted
    fit = fit_crowd(votes, truth="vote")
    assert report["crowd"]["variant"] == "vote"  # every vote on two known models
    assert report["crowd"]["converged"] is True
    assert report["crowd"]["iterations"] == fit.iterations
    for j, entry in enumerate(report["annotators"]):
        assert entry["annotator"] == fit.annotators[j]
        model = entry["model_reliability"]
        assert model["estimate"] == round(float(fit.reliability[j]), 4)
        assert model["ci95"] == [round(float(v), 4) for v in fit.reliability_ci95[j]]
        assert entry["model_position_bias"]["left_share"] == round(float(fit.left_share[j]), 4)


def test_the_spammers_are_unreliable_and_no_honest_annotator_is(planted):
    _, _, report = planted
    unreliable = {
        entry["annotator"]: entry["model_reliability"]["unreliable"]["flagged"]
        for entry in report["annotators"]
    }
    kinds = dict(zip(unreliable, KINDS, strict=True))
    assert [name for name, flagged in unreliable.items() if flagged] == [
        name for name, kind in kinds.items() if kind != "honest"
    ]


def test_the_crowd_leaderboard_is_on_the_elo_scale_and_undoes_the_spammers(planted):
    _, truth, report = planted
    crowd = report["models"]["crowd_leaderboard"]["models"]
    plain = report["models"]["bradley_terry"]["models"]
    elo = {f"m{i}": 1000 + 400 * s / math.log(10) for i, s in enumerate(truth)}
    assert [m["model"] for m in crowd] == sorted(elo, key=lambda m: -elo[m])
    assert np.mean([m["score"] for m in crowd]) == pytest.approx(1000, abs=0.5)
    spread = crowd[0]["score"] - crowd[-1]["score"]
    plain_spread = plain[0]["score"] - plain[-1]["score"]
    true_spread = max(elo.values()) - min(elo.values())
    # The spammers' coin flips compress the plain scores; the weighted ones come near the truth.
    # Here honest annotators answer at random too, 10-25% of the time (tests/agreement/
    # test_crowd_votes.simulate), and those answers keep their annotator's weight: a little
    # compression remains (test_weighted_bt plants honest annotators as the bench does, and
    # there the intervals hold the truth).
    assert plain_spread < 0.6 * true_spread < 0.7 * true_spread < spread < 1.3 * true_spread
    for entry in crowd:
        assert entry["ci95"][0] < entry["score"] < entry["ci95"][1]
        assert 0 < entry["weighted_votes"] < entry["votes"]


def test_mostly_unknown_models_take_the_comparison_level_variant(planted):
    votes, _, _ = planted
    columns = as_columns(votes)
    report = crowd_report(dataclasses.replace(columns, models=[""] * len(columns.models)))
    assert report["crowd"]["variant"] == "comparison"
    assert "comparison-level" in report["crowd"]["note"]
    assert report["leaderboard"]["models"] == []


def test_the_stats_endpoint_carries_the_crowd_fit(api, bob, judged):  # noqa: F811
    report = stats(api, bob)
    assert report["crowd"]["variant"] == "vote"
    assert set(report["crowd"]) >= {"variant", "converged", "iterations", "note"}
    for entry in report["annotators"]:
        assert set(entry["model_reliability"]) == {
            "estimate",
            "ci95",
            "effective_votes",
            "unreliable",
        }
        assert set(entry["model_position_bias"]) == {"left_share", "ci95", "random_side_votes"}
    board = report["models"]["crowd_leaderboard"]
    assert "the model finds random, which compress" in board["meaning"]
    assert {m["model"] for m in board["models"]} == {"model-1", "model-2", "model-3"}


def test_the_tie_section_merges_the_orders_of_a_pair():
    # Comparisons of m0 against m1 in both orders, all ties: one pair in the report, every
    # honest outcome a tie, the fitted tie chance that of equal strengths.
    rows = [(c, j, TIE, 1) for c in range(20) for j in range(3)]
    models = np.array([(c % 2, 1 - c % 2) for c in range(20)])
    votes = votes_of(rows, models=models, model_names=["m0", "m1"])
    ties = crowd_report(as_columns(votes))["crowd"]["ties"]
    fit = fit_crowd(votes)
    assert ties["tie_share"] == round(fit.tie_share, 4) and ties["tie_share"] > 0.98
    assert [(p["model_a"], p["model_b"]) for p in ties["pairs"]] == [("m0", "m1")]
    assert ties["pairs"][0]["honest_tie_share"] == pytest.approx(1.0, abs=1e-4)
    assert ties["pairs"][0]["model_tie_share"] == ties["tie_share"]
    assert "Bradley-Terry-Davidson" in ties["meaning"]
