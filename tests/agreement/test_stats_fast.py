"""The statistics' columnar fast path against a straightforward reference, on random votes.

`reference_stats` is the vote-by-vote implementation the columnar one replaced (one Python
object per vote, Counters and dicts); both must give the very same report, JSON byte for byte.
"""

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from apps.agreement.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    DIGITS,
    OPTIONS,
    REFERENCE,
    SIDED,
    Vote,
    VoteColumns,
    project_stats,
)
from apps.exports.selectors import winner_of

# -- the reference: the former implementation, vote by vote ---------------------------------------


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, DIGITS) if whole else None


def _finite(value: float) -> float | None:
    """The value rounded, or None where a library answers NaN (an undefined coefficient)."""
    return None if value is None or math.isnan(value) else round(float(value), DIGITS)


# -- agreement -----------------------------------------------------------------------------------


def pairwise_agreement(items: Iterable[Sequence[str]]) -> dict[str, Any]:
    """Raw agreement over every pair of annotators who judged the same comparison.

    `items` holds each comparison's options. As MT-Bench reports it: `with_ties` counts every
    pair (equal options agree); `without_ties` only pairs where both votes chose a candidate.
    """
    pairs = agree = sided_pairs = sided_agree = 0
    for options in items:
        for first, second in combinations(options, 2):
            pairs += 1
            agree += first == second
            if first in SIDED and second in SIDED:
                sided_pairs += 1
                sided_agree += first == second
    return {
        "with_ties": {"agreement": _share(agree, pairs), "pairs": pairs},
        "without_ties": {"agreement": _share(sided_agree, sided_pairs), "pairs": sided_pairs},
    }


def reliability_matrix(cells: Iterable[tuple[str, int, float]]) -> np.ndarray:
    """Krippendorff's reliability data: annotators x comparisons, NaN where one did not vote.

    `cells` are (annotator, comparison, value). Rows and columns are in sorted order.
    """
    cells = list(cells)
    annotators = {name: i for i, name in enumerate(sorted({c[0] for c in cells}))}
    comparisons = {pk: j for j, pk in enumerate(sorted({c[1] for c in cells}))}
    matrix = np.full((len(annotators), len(comparisons)), np.nan)
    for annotator, comparison, value in cells:
        matrix[annotators[annotator], comparisons[comparison]] = value
    return matrix


def krippendorff_alpha(
    matrix: np.ndarray,
    *,
    level: Literal["nominal", "ordinal"],
    value_domain: Sequence[float] | None = None,
) -> float | None:
    """Krippendorff's alpha from the library; None where it is undefined.

    It is undefined without a comparison of two or more votes, or when every vote is the same.
    """
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2 if matrix.size else np.array([])
    if not pairable.any():
        return None
    values = matrix[:, pairable]
    if len(np.unique(values[~np.isnan(values)])) < 2:
        return None
    return _finite(
        krippendorff.alpha(
            reliability_data=values, level_of_measurement=level, value_domain=value_domain
        )
    )


def fleiss(items: Sequence[Sequence[str]]) -> tuple[float | None, str | None]:
    """Fleiss' kappa from statsmodels, and None with the reason where it does not apply."""
    sizes = {len(options) for options in items}
    if not items:
        return None, "No votes."
    if len(sizes) > 1:
        return None, (
            f"Comparisons have from {min(sizes)} to {max(sizes)} votes; Fleiss' kappa needs the "
            "same number of votes on every comparison (Krippendorff's alpha does not)."
        )
    if sizes == {1}:
        return None, "Every comparison has one vote; Fleiss' kappa needs two or more."
    table = np.array([[Counter(options)[o] for o in OPTIONS] for options in items])
    # Every vote for one option: chance agreement is 1 and kappa 0/0, undefined (null).
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(fleiss_kappa(table, method="fleiss")), None


def agreement(votes: Sequence[Vote]) -> dict[str, Any]:
    """The project's agreement: raw, Krippendorff's alpha, and Fleiss' kappa where it applies."""
    by_comparison: dict[int, list[str]] = defaultdict(list)
    for vote in votes:
        by_comparison[vote.comparison].append(vote.option)
    items = [by_comparison[pk] for pk in sorted(by_comparison)]
    code = {option: i for i, option in enumerate(OPTIONS)}
    nominal = reliability_matrix((v.annotator, v.comparison, code[v.option]) for v in votes)
    strengths = [(v.annotator, v.comparison, v.strength) for v in votes if v.strength is not None]
    ordinal = (
        krippendorff_alpha(
            reliability_matrix(strengths), level="ordinal", value_domain=list(range(-3, 4))
        )
        if strengths
        else None
    )
    kappa, note = fleiss(items)
    return {
        "pairwise": pairwise_agreement(items),
        "krippendorff_alpha_nominal": krippendorff_alpha(
            nominal, level="nominal", value_domain=list(range(len(OPTIONS)))
        ),
        "krippendorff_alpha_ordinal": ordinal,
        "fleiss_kappa": kappa,
        "fleiss_kappa_note": note,
        "reference": REFERENCE,
    }


# -- annotators ----------------------------------------------------------------------------------


def leave_one_out(items: Mapping[int, Sequence[tuple[str, str]]]) -> dict[str, tuple[int, int]]:
    """Per annotator: (agreements, comparisons counted) with the majority of the others.

    `items` maps each comparison to its (annotator, option) votes. A comparison counts for an
    annotator when at least two others voted on it and one option has strictly more of their
    votes than any other; without such a majority there is nothing to agree with.
    """
    counted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for votes in items.values():
        if len(votes) < 3:
            continue
        everyone = Counter(option for _, option in votes)
        for annotator, option in votes:
            others = everyone.copy()
            others[option] -= 1
            majority = winner_of(+others)
            if majority is None:
                continue
            counted[annotator][0] += option == majority
            counted[annotator][1] += 1
    return {name: (agree, total) for name, (agree, total) in counted.items()}


def wilson_interval(successes: int, trials: int) -> list[float] | None:
    """The 95% Wilson score interval for a binomial share, [low, high]; None without trials."""
    if not trials:
        return None
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return [round(float(low), DIGITS), round(float(high), DIGITS)]


def annotator_summaries(votes: Sequence[Vote]) -> list[dict[str, Any]]:
    """One entry per annotator (by pseudonym, sorted): their habits, and how far to trust them.

    Every figure but the gold ones is over their votes on ordinary (non-gold) comparisons.
    """
    ordinary = [v for v in votes if not v.is_gold]
    by_comparison: dict[int, list[tuple[str, str]]] = defaultdict(list)
    own: dict[str, list[Vote]] = defaultdict(list)
    gold: dict[str, list[bool]] = defaultdict(list)
    for vote in ordinary:
        by_comparison[vote.comparison].append((vote.annotator, vote.option))
        own[vote.annotator].append(vote)
    for vote in votes:
        if vote.is_gold and vote.gold_correct is not None:
            gold[vote.annotator].append(vote.gold_correct)
    loo = leave_one_out(by_comparison)
    summaries = []
    for name in sorted(set(own) | set(gold)):
        mine = own.get(name, [])
        options = Counter(v.option for v in mine)
        sides = [v.side for v in mine if v.side is not None]
        lefts = sides.count("left")
        durations = [v.duration_ms for v in mine if v.duration_ms is not None]
        agree, counted = loo.get(name, (0, 0))
        summaries.append(
            {
                "annotator": name,
                "judgments": len(mine),
                "agreement_with_others": _share(agree, counted),
                "agreement_with_others_comparisons": counted,
                "gold_answered": len(gold[name]),
                "gold_accuracy": _share(sum(gold[name]), len(gold[name])),
                "position_bias": {
                    "left_share": _share(lefts, len(sides)),
                    "left": lefts,
                    "side_choices": len(sides),
                    "ci95": wilson_interval(lefts, len(sides)),
                },
                "tie_rate": _share(options["tie"], len(mine)),
                "both_bad_rate": _share(options["both_bad"], len(mine)),
                "median_duration_ms": statistics.median(durations) if durations else None,
            }
        )
    return summaries


# -- models --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Battle:
    """The votes of one comparison between two different models, both-bad votes left out."""

    model_a: str
    model_b: str
    wins_a: int
    wins_b: int
    ties: int


def battles_of(votes: Iterable[Vote]) -> list[Battle]:
    """One battle per comparison of two named, different models, in comparison order."""
    tallies: dict[int, tuple[str, str, Counter[str]]] = {}
    for vote in votes:
        if vote.is_gold or not vote.model_a or not vote.model_b or vote.model_a == vote.model_b:
            continue
        tally = tallies.setdefault(vote.comparison, (vote.model_a, vote.model_b, Counter()))
        tally[2][vote.option] += 1
    battles = []
    for pk in sorted(tallies):
        model_a, model_b, options = tallies[pk]
        if options["a"] + options["b"] + options["tie"]:
            battles.append(Battle(model_a, model_b, options["a"], options["b"], options["tie"]))
    return battles


def win_rates(battles: Iterable[Battle]) -> dict[str, dict[str, dict[str, Any]]]:
    """For each ordered pair of models that met: the first's wins over the second.

    `win_rate` is (wins + ties / 2) / votes between them; both-bad votes are left out.
    """
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for battle in battles:
        for first, second, wins, losses in (
            (battle.model_a, battle.model_b, battle.wins_a, battle.wins_b),
            (battle.model_b, battle.model_a, battle.wins_b, battle.wins_a),
        ):
            counts = tally[first, second]
            counts[0] += wins
            counts[1] += losses
            counts[2] += battle.ties
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for first, second in sorted(tally):
        wins, losses, ties = tally[first, second]
        votes = wins + losses + ties
        matrix.setdefault(first, {})[second] = {
            "win_rate": round((wins + ties / 2) / votes, DIGITS),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "votes": votes,
        }
    return matrix


def bradley_terry_strengths(wins: np.ndarray, *, tolerance: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths by Hunter's MM algorithm, with geometric mean 1.

    `wins[i, j]` is how often model i beat model j (ties already counted half to each). Every
    model needs some wins and the graph of who met whom must be connected; `bradley_terry` sees
    to both with its prior.
    """
    met = wins + wins.T
    total_wins = wins.sum(axis=1)
    strengths = np.ones(len(wins))
    for _ in range(10_000):
        updated = total_wins / (met / (strengths[:, None] + strengths[None, :])).sum(axis=1)
        updated /= np.exp(np.log(updated).mean())
        if np.abs(np.log(updated) - np.log(strengths)).max() < tolerance:
            return updated
        strengths = updated
    return strengths


def elo_scale(strengths: np.ndarray) -> np.ndarray:
    return 1000 + 400 * np.log10(strengths)


def bradley_terry(
    battles: Sequence[Battle],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Bradley-Terry scores per model with 95% bootstrap intervals, on an Elo-like scale.

    Ties count half a win to each side, as Chatbot Arena counts them. Each pair of models that
    met gets one more virtual tie (half a win each way), so that an unbeaten or winless model
    still has a finite score. The bootstrap resamples comparisons (all votes of one comparison
    together, since they judge the same two texts) with a fixed seed, so the output is the same
    on every call.
    """
    description = {
        "scale": "1000 + 400 * log10(strength); strengths have geometric mean 1, so the "
        "mean score is 1000 and 400 points are 10:1 odds",
        "ties": "half a win to each model",
        "prior": "one virtual tie between each pair of models that met",
        "interval": f"95% percentile bootstrap over comparisons, {resamples} resamples, "
        f"seed {seed}",
    }
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    if len(models) < 2:
        return {**description, "models": []}
    index = {name: i for i, name in enumerate(models)}
    first = np.array([index[b.model_a] for b in battles])
    second = np.array([index[b.model_b] for b in battles])
    wins_first = np.array([b.wins_a + b.ties / 2 for b in battles])
    wins_second = np.array([b.wins_b + b.ties / 2 for b in battles])
    prior = np.zeros((len(models), len(models)))
    prior[first, second] = prior[second, first] = 0.5

    def scores(weights: np.ndarray) -> np.ndarray:
        wins = prior.copy()
        np.add.at(wins, (first, second), weights * wins_first)
        np.add.at(wins, (second, first), weights * wins_second)
        return elo_scale(bradley_terry_strengths(wins))

    point = scores(np.ones(len(battles)))
    rng = np.random.default_rng(seed)
    samples = np.array(
        [
            scores(np.bincount(rng.integers(0, len(battles), len(battles)), minlength=len(battles)))
            for _ in range(resamples)
        ]
    )
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    votes = Counter[str]()
    for battle in battles:
        n = battle.wins_a + battle.wins_b + battle.ties
        votes[battle.model_a] += n
        votes[battle.model_b] += n
    ranked = sorted(range(len(models)), key=lambda i: (-point[i], models[i]))
    return {
        **description,
        "models": [
            {
                "model": models[i],
                "score": round(float(point[i]), 1),
                "ci95": [round(float(low[i]), 1), round(float(high[i]), 1)],
                "votes": votes[models[i]],
            }
            for i in ranked
        ],
    }


# -- the report ----------------------------------------------------------------------------------


def reference_stats(votes: Iterable[Vote], *, batch_id: int | None = None) -> dict[str, Any]:
    """The whole report of the stats endpoint, from the votes `stats_votes` loads."""
    votes = list(votes)
    ordinary = [v for v in votes if not v.is_gold]
    battles = battles_of(ordinary)
    return {
        "counts": {
            "comparisons": len({v.comparison for v in ordinary}),
            "judgments": len(ordinary),
            "annotators": len({v.annotator for v in votes}),
            "gold_judgments": len(votes) - len(ordinary),
            "filters": {"batch": batch_id},
            "left_out": "listwise comparisons (all figures); gold items (all but gold accuracy)",
        },
        "agreement": agreement(ordinary),
        "annotators": annotator_summaries(votes),
        "models": {
            "win_rates": win_rates(battles),
            "win_rates_note": "win_rate = (wins + ties / 2) / votes between the two models; "
            "both-bad votes, and comparisons of a model with itself or without model names, "
            "are left out",
            "bradley_terry": bradley_terry(battles),
        },
    }


# -- the comparison -------------------------------------------------------------------------------

MODELS = ("", "m-1", "m-2", "m-3", "m-4")


def random_votes(rng: np.random.Generator, comparisons: int) -> list[Vote]:
    """Votes on `comparisons` comparisons: 1-6 voters each out of 9, every option and side,
    some graded, some gold, some without models or of a model with itself, odd and even counts
    of durations (medians of two middles)."""
    votes = []
    for j in rng.permutation(comparisons):
        model_a, model_b = (MODELS[int(k)] for k in rng.integers(0, len(MODELS), 2))
        is_gold = bool(rng.random() < 0.1)
        voters = rng.choice(9, size=int(rng.integers(1, 7)), replace=False)
        skew = rng.dirichlet(np.ones(len(OPTIONS)))
        for annotator in voters:
            option = OPTIONS[int(rng.choice(len(OPTIONS), p=skew))]
            graded = rng.random() < 0.5
            votes.append(
                Vote(
                    comparison=int(j) * 7 + 3,
                    annotator=f"ann-{int(annotator):02d}",
                    option=option,
                    side=str(rng.choice(["left", "right"])) if option in SIDED else None,
                    strength=int(rng.integers(-3, 4)) if graded else None,
                    model_a=model_a,
                    model_b=model_b,
                    is_gold=is_gold,
                    gold_correct=(
                        None if not is_gold or rng.random() < 0.2 else bool(rng.random() < 0.7)
                    ),
                    duration_ms=None if rng.random() < 0.2 else int(rng.integers(1, 40)) * 100,
                )
            )
    votes.sort(key=lambda v: v.comparison)  # as stats_votes orders them
    return votes


@pytest.mark.parametrize("seed", range(8))
def test_the_columns_give_the_reference_report(seed):
    rng = np.random.default_rng(seed)
    votes = random_votes(rng, comparisons=int(rng.integers(1, 300)))
    expected = reference_stats(votes, batch_id=seed)
    got = project_stats(VoteColumns.of(votes), batch_id=seed)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)


def test_the_columns_give_the_reference_report_on_three_votes_each():
    # As the benchmark seeds: overlap 3, two named models per comparison, Fleiss' kappa defined.
    rng = np.random.default_rng(99)
    votes = [
        v
        for v in random_votes(rng, comparisons=400)
        if v.model_a and v.model_b and v.model_a != v.model_b
    ]
    by_comparison = defaultdict(list)
    for v in votes:
        by_comparison[v.comparison].append(v)
    three = [v for group in by_comparison.values() if len(group) == 3 for v in group]
    expected = reference_stats(three)
    assert expected["agreement"]["fleiss_kappa"] is not None
    assert expected["models"]["bradley_terry"]["models"]
    assert json.dumps(project_stats(three)) == json.dumps(expected)


def test_no_votes_give_the_reference_report():
    assert project_stats([]) == reference_stats([])


def test_columns_give_back_the_votes():
    votes = random_votes(np.random.default_rng(5), comparisons=50)
    assert list(VoteColumns.of(votes)) == votes
