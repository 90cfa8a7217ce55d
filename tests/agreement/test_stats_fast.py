"""The statistics, without a database, against references that share no code with them.

Each figure is checked two ways: on a small case computed by hand (the arithmetic is in the
comment), and on random votes against an independent reference: the `krippendorff` package on
the annotators x comparisons matrix, statsmodels' `fleiss_kappa` on `aggregate_raters`' table,
a logistic regression (statsmodels' GLM) for Bradley-Terry, the Wilson formula written out,
`statistics.median`, and counting over pairs of votes as the definitions say. Where our code
itself calls a package (alpha, kappa, the Wilson interval), the hand cases are what check it.
"""

import math
import statistics
from collections import Counter, defaultdict
from itertools import combinations

import krippendorff
import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from apps.agreement.flags import bias_bounds
from apps.agreement.stats import (
    OPTIONS,
    SIDED,
    Battle,
    Vote,
    VoteColumns,
    agreement,
    annotator_summaries,
    battles_of,
    bradley_terry,
    fleiss,
    krippendorff_alpha,
    pairwise_agreement,
    project_stats,
    reliability_matrix,
    wilson_interval,
    win_rates,
)

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def v(comparison, annotator, option, *, side=None, strength=None, models=("m-1", "m-2"), **more):
    """A vote, with what a test does not care about left at neutral values."""
    if side is None and option in SIDED:
        side = "left"
    return Vote(
        comparison=comparison,
        annotator=annotator,
        option=option,
        side=side,
        strength=strength,
        model_a=models[0],
        model_b=models[1],
        is_gold=more.get("is_gold", False),
        gold_correct=more.get("gold_correct"),
        duration_ms=more.get("duration_ms"),
    )


def wilson(k: int, n: int) -> list[float]:
    """The Wilson score interval written out: (p + z²/2n ± z √(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + Z95 * Z95 / (2 * n)) / (1 + Z95 * Z95 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / (1 + Z95 * Z95 / n)
    return [round(centre - half, 4), round(centre + half, 4)]


# -- by hand -------------------------------------------------------------------------------------

# Three comparisons, two annotators: (a, a), (a, b), (b, tie); graded strengths (0, 0), (0, 1),
# (1, 2).
SMALL = [
    v(1, "x", "a", strength=0),
    v(1, "y", "a", strength=0),
    v(2, "x", "a", strength=0),
    v(2, "y", "b", strength=1),
    v(3, "x", "b", strength=1),
    v(3, "y", "tie", strength=2),
]


def test_agreement_of_a_small_case_by_hand():
    report = agreement(SMALL)
    # Pairs: 3, of which one agrees (comparison 1). Pairs of two sided votes: 1 and 2; 1 agrees.
    assert report["pairwise"] == {
        "with_ties": {"agreement": 0.3333, "pairs": 3},
        "without_ties": {"agreement": 0.5, "pairs": 2},
    }
    # Nominal alpha. Values a, b, tie: n_a = 3, n_b = 2, n_tie = 1, N = 6. Coincidences: o_aa = 2,
    # o_ab = o_ba = 1, o_btie = o_tieb = 1. D_o = 4 / 6; D_e = (N² - Σ n_c²) / (N (N - 1))
    # = (36 - 14) / 30 = 22/30; alpha = 1 - (4/6) / (22/30) = 1 - 20/22 = 1/11.
    assert report["krippendorff_alpha_nominal"] == round(1 / 11, 4)
    # Ordinal alpha on strengths 0, 1, 2 with n_0 = 3, n_1 = 2, n_2 = 1: the ordinal distance
    # δ(c, k) = Σ_{g=c..k} n_g - (n_c + n_k) / 2 gives δ(0,1) = 2.5, δ(1,2) = 1.5, δ(0,2) = 4.
    # D_o = (2 * 2.5² + 2 * 1.5²) / 6 = 17/6; D_e = 2 (3*2*2.5² + 2*1*1.5² + 3*1*4²) / 30 = 6;
    # alpha = 1 - (17/6) / 6 = 19/36.
    assert report["krippendorff_alpha_ordinal"] == round(19 / 36, 4)
    # Fleiss: per comparison P_i = Σ n_ij (n_ij - 1) / (n (n - 1)) = 1, 0, 0, so P = 1/3; the
    # option shares 3/6, 2/6, 1/6 give P_e = 14/36 = 7/18; kappa = (1/3 - 7/18) / (1 - 7/18)
    # = -1/11.
    assert report["fleiss_kappa"] == round(-1 / 11, 4)
    assert report["fleiss_kappa_note"] is None


def test_the_small_case_through_each_helper():
    items = [["a", "a"], ["a", "b"], ["b", "tie"]]
    assert pairwise_agreement(items) == agreement(SMALL)["pairwise"]
    assert fleiss(items) == (round(-1 / 11, 4), None)
    strengths = np.array([[0, 0, 1], [0, 1, 2]], dtype=float)
    domain = list(range(-3, 4))
    assert krippendorff_alpha(strengths, level="ordinal", value_domain=domain) == round(19 / 36, 4)
    # The same matrix read as nominal codes: the hand computation above, with 0, 1, 2 for
    # a, b, tie.
    assert krippendorff_alpha(strengths, level="nominal") == round(1 / 11, 4)


def test_alpha_of_two_coders_by_hand():
    # Two coders, four units: (0, 0), (0, 1), (1, 1), (1, 1). Coincidences: o00 = 2, o01 = o10
    # = 1, o11 = 4; n = 8, n0 = 3, n1 = 5. alpha = 1 - (n - 1) * o01 / (n0 * n1) = 1 - 7/15.
    matrix = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=float)
    assert krippendorff_alpha(matrix, level="nominal") == round(8 / 15, 4)


def test_undefined_coefficients_are_none_with_a_reason():
    # One vote per comparison: nothing is pairable.
    assert krippendorff_alpha(np.array([[0.0, 1.0], [np.nan, np.nan]]), level="nominal") is None
    # Every vote the same: D_e = 0.
    assert krippendorff_alpha(np.array([[1.0, 1.0], [1.0, 1.0]]), level="nominal") is None
    assert fleiss([]) == (None, "No votes.")
    assert fleiss([["a"], ["b"]]) == (
        None,
        "Every comparison has one vote; Fleiss' kappa needs two or more.",
    )
    kappa, note = fleiss([["a", "b"], ["a", "a", "tie"]])
    assert kappa is None
    assert "from 2 to 3 votes" in note
    # Every vote for one option: chance agreement 1, kappa 0/0.
    assert fleiss([["a", "a"], ["a", "a"]]) == (None, None)


def test_wilson_interval_by_hand():
    # 3 of 4: p = 0.75, z² = 3.8415; centre = (0.75 + 0.4802) / 1.9604 = 0.6275; half-width
    # = 1.96 * √(0.046875 + 0.060023) / 1.9604 = 0.3269: [0.3006, 0.9544].
    assert wilson_interval(3, 4) == [0.3006, 0.9544]
    # 0 of 5: centre = half-width = (z² / 10) / (1 + z² / 5) = 0.2172: [0, 0.4345].
    assert wilson_interval(0, 5) == [0.0, 0.4345]
    assert wilson_interval(0, 0) is None
    for k, n in [(1, 3), (2, 3), (7, 10), (10, 10), (13, 40)]:
        assert wilson_interval(k, n) == wilson(k, n)


# Four comparisons, three annotators, as in test_stats: X, Y, Z are the pairs of models 1-2,
# 1-3, 2-3; W is 1-2 again. (option, side, ms) per annotator; one gold vote each on comparison 9.
PLAN: dict[str, list[tuple[str, str | None, int | None]]] = {
    "ann": [("a", "left", 1000), ("a", "left", 2000), ("b", "right", 3000), ("a", "left", 4000)],
    "ben": [("a", "right", 500), ("tie", None, 1500), ("b", "right", 2500), ("a", "left", 3500)],
    "cat": [("b", "right", 100), ("a", "left", 200), ("both_bad", None, 300), ("a", "left", None)],
}
MODELS_OF = {1: ("m-1", "m-2"), 2: ("m-1", "m-3"), 3: ("m-2", "m-3"), 4: ("m-1", "m-2")}


def planned_votes() -> list[Vote]:
    votes = [
        v(pk, name, option, side=side, duration_ms=ms, models=MODELS_OF[pk])
        for name, plan in PLAN.items()
        for pk, (option, side, ms) in enumerate(plan, start=1)
    ]
    votes += [
        v(9, "ann", "a", is_gold=True, gold_correct=True),
        v(9, "ben", "b", is_gold=True, gold_correct=False),
        v(9, "cat", "a", is_gold=True, gold_correct=None),
    ]
    return votes


def test_annotators_by_hand():
    ann, ben, cat = annotator_summaries(planned_votes())
    assert [e["annotator"] for e in (ann, ben, cat)] == ["ann", "ben", "cat"]
    # Options: X a a b, Y a tie a, Z b b both_bad, W a a a. Leave-one-out counts a comparison
    # when the two others have a strict majority: ann only on W (others a, a: agrees);
    # ben on Y (others a, a: ben tie disagrees) and W; cat on X (a, a: cat b), Z (b, b: cat
    # both_bad) and W.
    assert (ann["agreement_with_others"], ann["agreement_with_others_comparisons"]) == (1.0, 1)
    assert (ben["agreement_with_others"], ben["agreement_with_others_comparisons"]) == (0.5, 2)
    assert (cat["agreement_with_others"], cat["agreement_with_others_comparisons"]) == (0.3333, 3)
    # Sides: ann left, left, right, left (3 of 4); ben right, right, left (1 of 3); cat 2 of 3.
    # The project's share beside ann's is the median of ben's and cat's: (1/3 + 2/3) / 2.
    assert ann["position_bias"] == {
        "left_share": 0.75,
        "left": 3,
        "side_choices": 4,
        "ci95": [0.3006, 0.9544],
        "project_left_share": 0.5,
        # 3 of 4 beyond 55%: P = 4 * 0.55^3 * 0.45 + 0.55^4 = 0.3910, then Holm over 6 tests.
        "test": ann["position_bias"]["test"],
    }
    assert ann["position_bias"]["test"]["bounds"] == [0.45, 0.55]
    assert ann["position_bias"]["test"]["p_left_holm"] == 1.0
    assert ann["position_bias"]["test"]["side"] is None
    assert ben["position_bias"]["left_share"] == 0.3333
    assert [e["tie_rate"] for e in (ann, ben, cat)] == [0.0, 0.25, 0.0]
    assert [e["both_bad_rate"] for e in (ann, ben, cat)] == [0.0, 0.0, 0.25]
    # Medians: (2000 + 3000) / 2, (1500 + 2500) / 2, the middle of 100, 200, 300.
    assert [e["median_duration_ms"] for e in (ann, ben, cat)] == [2500, 2000, 200]
    # Gold: counted apart, and only where it was scored.
    assert [e["judgments"] for e in (ann, ben, cat)] == [4, 4, 4]
    assert [(e["gold_answered"], e["gold_accuracy"]) for e in (ann, ben, cat)] == [
        (1, 1.0),
        (1, 0.0),
        (0, None),
    ]


def test_win_rates_by_hand():
    rates = win_rates(battles_of(VoteColumns.of(planned_votes())))
    # 1 vs 2: X a a b and W a a a: 5 wins, 1 loss. 1 vs 3: Y a tie a: 2 wins, 1 tie, (2 + 1/2) / 3.
    # 2 vs 3: Z b b both_bad: 3 wins twice (both-bad left out). Gold comparison 9 left out.
    assert rates["m-1"]["m-2"] == {
        "win_rate": 0.8333,
        "wins": 5,
        "losses": 1,
        "ties": 0,
        "votes": 6,
    }
    assert rates["m-2"]["m-1"]["win_rate"] == 0.1667
    assert rates["m-1"]["m-3"] == {
        "win_rate": 0.8333,
        "wins": 2,
        "losses": 0,
        "ties": 1,
        "votes": 3,
    }
    assert rates["m-3"]["m-1"]["win_rate"] == 0.1667
    assert rates["m-3"]["m-2"] == {"win_rate": 1.0, "wins": 2, "losses": 0, "ties": 0, "votes": 2}
    assert rates["m-2"]["m-3"]["win_rate"] == 0.0
    assert list(rates) == ["m-1", "m-2", "m-3"]


def test_battles_leave_out_gold_unnamed_and_self_comparisons():
    votes = [
        v(1, "x", "a", models=("m-1", "m-1")),
        v(2, "x", "a", models=("", "m-1")),
        v(3, "x", "a", models=("m-1", "m-2"), is_gold=True),
        v(4, "x", "both_bad", models=("m-1", "m-2")),
        v(5, "x", "tie", models=("m-2", "m-1")),
    ]
    assert win_rates(battles_of(VoteColumns.of(votes))) == {
        "m-1": {"m-2": {"win_rate": 0.5, "wins": 0, "losses": 0, "ties": 1, "votes": 1}},
        "m-2": {"m-1": {"win_rate": 0.5, "wins": 0, "losses": 0, "ties": 1, "votes": 1}},
    }


def test_bradley_terry_of_two_models_is_the_odds_of_their_wins():
    # With two models the fit is exact: strength ratio = (wins + prior) / (losses + prior),
    # here (3 + 1 tie / 2 + 1/2 prior) / (1 + 1/2 + 1/2) = 4 / 2: 400 log10(2) points apart,
    # around a mean of 1000.
    battles = [Battle("m", "n", 2, 1, 0), Battle("n", "m", 0, 1, 1)]
    first, second = bradley_terry(battles, resamples=10)["models"]
    assert (first["model"], second["model"]) == ("m", "n")
    assert first["score"] == pytest.approx(1000 + 200 * math.log10(2), abs=0.06)
    assert second["score"] == pytest.approx(1000 - 200 * math.log10(2), abs=0.06)
    assert (first["votes"], second["votes"]) == (5, 5)


def test_no_votes():
    report = project_stats([])
    assert report["counts"] | {"left_out": None} == {
        "comparisons": 0,
        "judgments": 0,
        "annotators": 0,
        "gold_judgments": 0,
        "filters": {"batch": None},
        "left_out": None,
    }
    assert report["agreement"]["pairwise"]["with_ties"] == {"agreement": None, "pairs": 0}
    assert report["agreement"]["krippendorff_alpha_nominal"] is None
    assert (report["agreement"]["fleiss_kappa"], report["agreement"]["fleiss_kappa_note"]) == (
        None,
        "No votes.",
    )
    assert report["annotators"] == []
    assert report["models"]["win_rates"] == {}
    assert report["models"]["bradley_terry"]["models"] == []


# -- random votes against independent references ------------------------------------------------

MODELS = ("", "m-1", "m-2", "m-3", "m-4")


def random_votes(rng: np.random.Generator, comparisons: int, voters=(1, 7)) -> list[Vote]:
    """Votes on `comparisons` comparisons, `voters` (low, high) of 9 annotators on each, with
    every option and side, some graded, some gold, some without models or of a model with
    itself, odd and even counts of durations."""
    votes = []
    for j in rng.permutation(comparisons):
        model_a, model_b = (MODELS[int(k)] for k in rng.integers(0, len(MODELS), 2))
        is_gold = bool(rng.random() < 0.1)
        chosen = rng.choice(9, size=int(rng.integers(*voters)), replace=False)
        skew = rng.dirichlet(np.ones(len(OPTIONS)))
        for annotator in chosen:
            option = OPTIONS[int(rng.choice(len(OPTIONS), p=skew))]
            votes.append(
                v(
                    int(j) * 7 + 3,
                    f"ann-{int(annotator):02d}",
                    option,
                    side=str(rng.choice(["left", "right"])) if option in SIDED else None,
                    strength=int(rng.integers(-3, 4)) if rng.random() < 0.5 else None,
                    models=(model_a, model_b),
                    is_gold=is_gold,
                    gold_correct=(
                        None if not is_gold or rng.random() < 0.2 else bool(rng.random() < 0.7)
                    ),
                    duration_ms=None if rng.random() < 0.2 else int(rng.integers(1, 40)) * 100,
                )
            )
    votes.sort(key=lambda vote: vote.comparison)  # as stats_votes orders them
    return votes


def matrix_of(votes: list[Vote], value) -> np.ndarray:
    """Krippendorff's reliability data: annotators x comparisons, NaN where one did not vote."""
    names = sorted({vote.annotator for vote in votes})
    comparisons = sorted({vote.comparison for vote in votes})
    matrix = np.full((len(names), len(comparisons)), np.nan)
    for vote in votes:
        matrix[names.index(vote.annotator), comparisons.index(vote.comparison)] = value(vote)
    return matrix


def by_comparison(votes: list[Vote]) -> dict[int, list[Vote]]:
    grouped = defaultdict(list)
    for vote in votes:
        grouped[vote.comparison].append(vote)
    return grouped


@pytest.mark.parametrize("seed", range(6))
def test_agreement_matches_krippendorff_and_the_pairs_on_random_votes(seed):
    rng = np.random.default_rng(seed)
    votes = [vote for vote in random_votes(rng, 150) if not vote.is_gold]
    report = agreement(votes)
    nominal = krippendorff.alpha(
        reliability_data=matrix_of(votes, lambda vote: OPTIONS.index(vote.option)),
        level_of_measurement="nominal",
    )
    assert report["krippendorff_alpha_nominal"] == pytest.approx(nominal, abs=5e-5)
    graded = [vote for vote in votes if vote.strength is not None]
    ordinal = krippendorff.alpha(
        reliability_data=matrix_of(graded, lambda vote: vote.strength),
        level_of_measurement="ordinal",
        value_domain=list(range(-3, 4)),
    )
    assert report["krippendorff_alpha_ordinal"] == pytest.approx(ordinal, abs=5e-5)
    # Raw agreement, as defined: over every pair of votes on the same comparison.
    pairs = [p for group in by_comparison(votes).values() for p in combinations(group, 2)]
    sided = [(x, y) for x, y in pairs if x.option in SIDED and y.option in SIDED]
    assert report["pairwise"] == {
        "with_ties": {
            "agreement": round(sum(x.option == y.option for x, y in pairs) / len(pairs), 4),
            "pairs": len(pairs),
        },
        "without_ties": {
            "agreement": round(sum(x.option == y.option for x, y in sided) / len(sided), 4),
            "pairs": len(sided),
        },
    }


@pytest.mark.parametrize("seed", range(4))
def test_fleiss_matches_statsmodels_when_every_comparison_has_three_votes(seed):
    rng = np.random.default_rng(seed)
    votes = [vote for vote in random_votes(rng, 80, voters=(3, 4)) if not vote.is_gold]
    raw = [[OPTIONS.index(x.option) for x in group] for group in by_comparison(votes).values()]
    table, _ = aggregate_raters(np.array(raw), n_cat=len(OPTIONS))
    report = agreement(votes)
    assert report["fleiss_kappa_note"] is None
    assert report["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=5e-5)
    items = [[OPTIONS[code] for code in row] for row in raw]
    assert fleiss(items) == (report["fleiss_kappa"], None)


@pytest.mark.parametrize("seed", range(3))
def test_reliability_matrix_is_the_librarys_layout(seed):
    rng = np.random.default_rng(seed)
    # Six annotators, forty comparisons, 40% of the cells empty.
    matrix = rng.integers(0, 4, size=(6, 40)).astype(float)
    matrix[rng.random(matrix.shape) < 0.4] = np.nan
    cells = [
        (f"ann-{i}", 1000 + j, matrix[i, j])
        for i, j in zip(*np.nonzero(~np.isnan(matrix)), strict=True)
    ]
    built = reliability_matrix(rng.permutation(np.array(cells, dtype=object)).tolist())
    assert np.array_equal(np.isnan(built), np.isnan(matrix))
    assert np.array_equal(built[~np.isnan(built)], matrix[~np.isnan(matrix)])
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert krippendorff_alpha(built, level="nominal") == pytest.approx(expected, abs=5e-5)


def majority_of_others(vote: Vote, group: list[Vote]) -> str | None:
    """The option most of the other voters chose, when at least two did and it is unique."""
    others = Counter(x.option for x in group if x is not vote)
    ranked = others.most_common()
    if sum(others.values()) < 2 or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


@pytest.mark.parametrize("seed", range(6))
def test_annotators_match_counting_on_random_votes(seed):
    rng = np.random.default_rng(seed)
    votes = random_votes(rng, int(rng.integers(20, 200)))
    ordinary = [vote for vote in votes if not vote.is_gold]
    groups = by_comparison(ordinary)
    summaries = {entry["annotator"]: entry for entry in annotator_summaries(votes)}
    sided = {
        name: [v.side for v in ordinary if v.annotator == name and v.side] for name in summaries
    }
    for name, entry in summaries.items():
        mine = [vote for vote in ordinary if vote.annotator == name]
        others = [x.count("left") / len(x) for n, x in sided.items() if n != name and x]
        options = Counter(vote.option for vote in mine)
        sides = [vote.side for vote in mine if vote.side]
        durations = [vote.duration_ms for vote in mine if vote.duration_ms is not None]
        scored = [x.gold_correct for x in votes if x.annotator == name and x.is_gold]
        scored = [correct for correct in scored if correct is not None]
        majorities = [majority_of_others(vote, groups[vote.comparison]) for vote in mine]
        counted = [(vote, m) for vote, m in zip(mine, majorities, strict=True) if m is not None]
        share = lambda k, n: round(k / n, 4) if n else None  # noqa: E731
        assert entry["judgments"] == len(mine)
        assert entry["tie_rate"] == share(options["tie"], len(mine))
        assert entry["both_bad_rate"] == share(options["both_bad"], len(mine))
        assert entry["median_duration_ms"] == (statistics.median(durations) if durations else None)
        bias = dict(entry["position_bias"])
        test = bias.pop("test")
        project = round(statistics.median(others), 4) if others else None
        assert (test is None) == (not sides)
        if test is not None:
            assert test["bounds"] == [round(x, 4) for x in bias_bounds(project)]
        assert bias == {
            "left_share": share(sides.count("left"), len(sides)),
            "left": sides.count("left"),
            "side_choices": len(sides),
            "ci95": wilson(sides.count("left"), len(sides)) if sides else None,
            "project_left_share": project,
        }
        assert (entry["gold_answered"], entry["gold_accuracy"]) == (
            len(scored),
            share(sum(scored), len(scored)),
        )
        assert entry["agreement_with_others_comparisons"] == len(counted)
        assert entry["agreement_with_others"] == share(
            sum(vote.option == m for vote, m in counted), len(counted)
        )
    assert set(summaries) == {vote.annotator for vote in ordinary} | {
        vote.annotator for vote in votes if vote.is_gold and vote.gold_correct is not None
    }


def fought(votes: list[Vote]) -> list[tuple[str, str, Counter[str]]]:
    """Each ordinary comparison of two named, different models, with its options counted."""
    return [
        (group[0].model_a, group[0].model_b, Counter(x.option for x in group))
        for group in by_comparison(votes).values()
        if not group[0].is_gold and group[0].model_a and group[0].model_b
        if group[0].model_a != group[0].model_b
    ]


@pytest.mark.parametrize("seed", range(4))
def test_win_rates_match_counting_on_random_votes(seed):
    rng = np.random.default_rng(seed)
    votes = random_votes(rng, 150)
    tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for a, b, options in fought(votes):
        tally[a, b].update(wins=options["a"], losses=options["b"], ties=options["tie"])
        tally[b, a].update(wins=options["b"], losses=options["a"], ties=options["tie"])
    expected = {}
    for (first, second), c in tally.items():
        n = c["wins"] + c["losses"] + c["ties"]
        if n:
            expected.setdefault(first, {})[second] = {
                "win_rate": round((c["wins"] + c["ties"] / 2) / n, 4),
                "wins": c["wins"],
                "losses": c["losses"],
                "ties": c["ties"],
                "votes": n,
            }
    assert win_rates(battles_of(VoteColumns.of(votes))) == expected


@pytest.mark.parametrize("seed", range(4))
def test_bradley_terry_matches_a_logistic_regression_on_random_votes(seed):
    rng = np.random.default_rng(seed)
    votes = random_votes(rng, 200)
    report = bradley_terry(battles_of(VoteColumns.of(votes)), resamples=20)["models"]
    # The maximum-likelihood fit of P(i beats j) = 1 / (1 + exp(b_j - b_i)) to each pair's
    # wins (ties half to each, plus the prior's virtual tie), as a binomial GLM on x_i - x_j.
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for a, b, options in fought(votes):
        if options["a"] + options["b"] + options["tie"]:
            for x, y in ((a, b), (b, a)):
                wins[x, y] += options["a" if x == a else "b"] + options["tie"] / 2
    models = sorted({m for pair in wins for m in pair})
    design, outcomes = [], []
    for i, j in combinations(range(len(models)), 2):
        if (models[i], models[j]) in wins:
            row = np.zeros(len(models))
            row[i], row[j] = 1, -1
            design.append(row[1:])  # the first model's b is 0
            prior = 0.5
            outcomes.append(
                [wins[models[i], models[j]] + prior, wins[models[j], models[i]] + prior]
            )
    fit = sm.GLM(np.array(outcomes), np.array(design), family=sm.families.Binomial()).fit()
    b = np.concatenate([[0.0], fit.params])
    # Geometric mean 1 is mean(b) = 0; the score is 1000 + 400 log10(e^b).
    expected = 1000 + 400 * (b - b.mean()) / math.log(10)
    assert [m["model"] for m in report] == sorted(models, key=lambda m: -expected[models.index(m)])
    for m in report:
        assert m["score"] == pytest.approx(expected[models.index(m["model"])], abs=0.06)
        low, high = m["ci95"]
        assert low <= high


def test_columns_give_back_the_votes():
    votes = random_votes(np.random.default_rng(5), comparisons=50)
    assert list(VoteColumns.of(votes)) == votes
