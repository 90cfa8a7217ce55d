"""The crowd model's part of the stats report: per annotator reliability and position bias,
the "unreliable" test, and a leaderboard that down-weights the annotators the model finds
random (`crowd.fit_crowd`, fitted once per report).

The variant follows what the votes can identify: the vote-level one (honest annotators may
disagree on matters of taste) when most votes compare two known models; else the
comparison-level one, the only one that can tell a spammer where models are unknown (see
crowd.py's docstring).
"""

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from apps.agreement.crowd import UNKNOWN_MODEL, CrowdFit, CrowdVotes, fit_crowd
from apps.agreement.crowd_bias import MEANING as LEFT_BIAS_MEANING
from apps.agreement.crowd_bias import left_bias
from apps.agreement.flags import CONFIDENCE
from apps.agreement.weighted_bt import WeightedStrengths, annotator_weights, weighted_strengths

if TYPE_CHECKING:
    from apps.agreement.stats import VoteColumns

# The vote-level variant needs most votes on two known models to pin the strengths it judges
# annotators by.
VOTE_LEVEL_MIN_KNOWN = 0.5
DIGITS = 4
ELO_PER_LOG = 400 / np.log(10)  # stats.elo_scale on a natural-log strength

RELIABILITY_MEANING = (
    "the share of an annotator's votes the crowd model reads as honest judgments rather than "
    "random answers"
)
LEADERBOARD_MEANING = (
    "Bradley-Terry strengths fitted to the decisive votes (ties and both-bad left out), each "
    "weighted by its annotator's reliability in the crowd model relative to the most reliable "
    "annotator's: the votes of annotators the model finds random, which compress "
    "bradley_terry's scale, count for little; on the same scale"
)
UNRELIABLE_RULE = (
    "flagged when the upper end of the annotator's reliability interval is below the lower end "
    "of the median other annotator's (by reliability)"
)


def _variant(crowd: CrowdVotes) -> Literal["vote", "comparison"]:
    known = (crowd.model_a != UNKNOWN_MODEL) & (crowd.model_b != UNKNOWN_MODEL)
    return "vote" if known.mean() >= VOTE_LEVEL_MIN_KNOWN else "comparison"


def _round(values: np.ndarray, digits: int = DIGITS) -> list[float]:
    return [round(float(v), digits) for v in values]


def _note(variant: str) -> str:
    if variant == "vote":
        return (
            "vote-level: most votes compare two known models, so each honest vote is judged "
            "against the models' strengths, and honest annotators may disagree on taste"
        )
    return (
        "comparison-level: most votes are on unknown models, so reliability is read from "
        "agreement within each comparison (honest disagreement lowers it)"
    )


def _unreliable(fit: CrowdFit, active: np.ndarray) -> list[dict[str, Any] | None]:
    """The reliability test per annotator: their interval wholly below the median other's."""
    order = sorted(np.flatnonzero(active), key=lambda j: (fit.reliability[j], j))
    tests: list[dict[str, Any] | None] = []
    for j in range(len(fit.annotators)):
        others = [i for i in order if i != j]
        if not active[j] or not others:
            tests.append(None)
            continue
        median = others[(len(others) - 1) // 2]
        low = float(fit.reliability_ci95[median][0])
        tests.append(
            {
                "flagged": bool(fit.reliability_ci95[j][1] < low),
                "others_median": round(float(fit.reliability[median]), DIGITS),
                "others_median_ci95": _round(fit.reliability_ci95[median]),
            }
        )
    return tests


def _effective(votes: float) -> float | None:
    # Negative or infinite where the likelihood does not pin r (its interval is all of 0..1).
    return round(votes, 1) if np.isfinite(votes) and votes >= 0 else None


def _leaderboard(
    fit: CrowdFit, crowd: CrowdVotes, board: WeightedStrengths
) -> list[dict[str, Any]]:
    """The strengths weighted by the fit's reliabilities (weighted_bt), ranked."""
    known = (crowd.model_a != UNKNOWN_MODEL) & (crowd.model_b != UNKNOWN_MODEL)
    size = len(fit.models)
    votes = np.bincount(crowd.model_a[known], minlength=size) + np.bincount(
        crowd.model_b[known], minlength=size
    )
    score = 1000 + ELO_PER_LOG * board.strength
    low, high = (1000 + ELO_PER_LOG * board.strength_ci95[:, k] for k in (0, 1))
    shown = np.flatnonzero(~np.isnan(board.strength))
    ranked = sorted(shown, key=lambda m: (-score[m], fit.models[m]))
    return [
        {
            "model": fit.models[m],
            "score": round(float(score[m]), 1),
            "ci95": [round(float(low[m]), 1), round(float(high[m]), 1)],
            "votes": int(votes[m]),
            "weighted_votes": round(float(board.weighted_votes[m]), 1),
        }
        for m in ranked
    ]


TIES_MEANING = (
    "ties are an outcome of the crowd model (Bradley-Terry-Davidson): tie_share is the chance of "
    "an honest tie between two equally strong models; per pair of models, honest_tie_share is "
    "the share of ties among the votes the model reads as honest (each weighted by that chance) "
    "and model_tie_share the fitted chance, lower the further apart the two strengths are. "
    "Both-bad votes count as ties here"
)


def _ties(fit: CrowdFit) -> dict[str, Any]:
    """The tie share, and per unordered pair of models the honest and fitted tie shares."""
    merged: dict[tuple[int, int], list[Any]] = {}
    for row, (a, b) in enumerate(zip(fit.pair_model_a, fit.pair_model_b, strict=True)):
        key = (int(min(a, b)), int(max(a, b)))
        entry = merged.setdefault(key, [np.zeros(3), float(fit.pair_tie_chance[row])])
        entry[0] = entry[0] + fit.pair_outcomes[row]
    pairs = []
    for (a, b), (outcomes, chance) in sorted(merged.items()):
        total = float(outcomes.sum())
        pairs.append(
            {
                "model_a": fit.models[a],
                "model_b": fit.models[b],
                "honest_votes": round(total, 1),
                "honest_tie_share": round(float(outcomes[2]) / total, DIGITS) if total else None,
                "model_tie_share": round(chance, DIGITS),
            }
        )
    return {
        "meaning": TIES_MEANING,
        "tie_share": round(fit.tie_share, DIGITS) if len(fit.pair_model_a) else None,
        "pairs": pairs,
    }


def crowd_report(votes: "VoteColumns") -> dict[str, Any]:
    """The crowd fit of the non-gold votes: {"crowd": the section (variant, convergence, what
    the figures mean), "annotators": pseudonym -> {"model_reliability", "model_position_bias",
    "left_bias_test" (crowd_bias.left_bias)}, "leaderboard": the crowd leaderboard
    (models.crowd_leaderboard)}."""
    crowd = CrowdVotes.of_columns(votes)
    leaderboard: dict[str, Any] = {
        "meaning": LEADERBOARD_MEANING,
        "scale": "1000 + 400 * log10(strength), strengths with geometric mean 1 over the "
        "compared models; 400 points are 10:1 odds",
        "interval": "95% Wald interval of the centred strength from the weighted observed "
        "information, the weights taken as known",
        "weighted_votes": "the sum of the weights of the decisive votes on the model "
        "(comparisons without two known models left out)",
        "models": [],
    }
    if not len(crowd):
        section: dict[str, Any] = {
            "variant": None,
            "converged": None,
            "iterations": 0,
            "note": "no votes yet",
        }
        return {"crowd": section, "annotators": {}, "leaderboard": leaderboard}
    variant = _variant(crowd)
    fit = fit_crowd(crowd, truth=variant)
    active = fit.votes > 0
    tests = _unreliable(fit, active)
    board = weighted_strengths(crowd, annotator_weights(fit.reliability))
    bias = left_bias(crowd, board.strength)
    annotators = {
        name: {
            "model_reliability": {
                "estimate": round(float(fit.reliability[j]), DIGITS),
                "ci95": _round(fit.reliability_ci95[j]),
                "effective_votes": _effective(float(fit.effective_votes[j])),
                "unreliable": tests[j],
            },
            "model_position_bias": {
                "left_share": round(float(fit.left_share[j]), DIGITS),
                "ci95": _round(fit.left_share_ci95[j]),
                "random_side_votes": round(float(fit.random_side_votes[j]), 1),
            },
            "left_bias_test": bias[j],
        }
        for j, name in enumerate(fit.annotators)
        if active[j]
    }
    section = {
        "variant": variant,
        "converged": fit.converged,
        "iterations": fit.iterations,
        "note": _note(variant),
        "reliability": RELIABILITY_MEANING,
        "position_bias": "the left share of the votes the model reads as random answers",
        "unreliable": UNRELIABLE_RULE,
        "left_bias": LEFT_BIAS_MEANING.format(confidence=CONFIDENCE),
        "ties": _ties(fit),
    }
    leaderboard["models"] = _leaderboard(fit, crowd, board)
    return {"crowd": section, "annotators": annotators, "leaderboard": leaderboard}
