"""The reliability-weighted leaderboard: Bradley-Terry-Davidson strengths fitted to the votes,
each vote weighted by its annotator's reliability (the crowd model's r_j) relative to the most
reliable annotator's.

Why not the crowd model's own strengths: its vote-level mixture reads an honest annotator's
upsets (the weaker model chosen, as Bradley-Terry says happens) partly as random answers, takes
honest r_j below 1 and makes the strengths too steep, and its intervals then miss the truth
(bench/quality.py: they held 6-38% of the true scores at 500 judgments). Here the crowd model
only says whose votes to trust; each trusted vote then counts as one Bradley-Terry-Davidson draw,
so upsets keep the scale where it is, and a spammer's votes (r_j near 0) count for almost nothing,
so they do not compress it either (the unweighted `bradley_terry` leaderboard's fault).

Ties are the model's third outcome (Davidson: softmax(Δ/2, -Δ/2, δ)), not half a win each, so
that two close models that often tie keep their true distance. Both-bad votes and comparisons
without two known models are left out. The fit is Newton's method on the penalised likelihood
(the crowd model's N(0, 4²) priors on the strengths and δ, so an unbeaten model stays finite),
which is concave: one maximum, found from zeros, deterministic. Intervals are 95% Wald intervals
of the centred strengths from the weighted observed information; the weights are treated as
known.
"""

from dataclasses import dataclass

import numpy as np

from apps.agreement.crowd import Z95, CrowdVotes
from apps.agreement.crowd_steps import BOTH_BAD, Problem, btd_information, strength_step

MAX_ITERATIONS = 100
TOLERANCE = 1e-10


@dataclass(frozen=True)
class WeightedStrengths:
    """Per model (in `CrowdVotes.models` order): `strength` on the natural-log scale, mean 0
    over the compared models (NaN for a model in no counted comparison), its 95% interval,
    and `weighted_votes`, the sum of the weights of the votes on it. `weights` per annotator."""

    strength: np.ndarray
    strength_ci95: np.ndarray
    weighted_votes: np.ndarray
    weights: np.ndarray
    tie_log_odds: float
    iterations: int
    converged: bool


def annotator_weights(reliability: np.ndarray) -> np.ndarray:
    """Each annotator's reliability relative to the most reliable one's (1 for them); all 1
    when no one is reliable at all."""
    top = float(reliability.max()) if len(reliability) else 0.0
    if top <= 0:
        return np.ones(len(reliability))
    weights: np.ndarray = np.clip(reliability / top, 0.0, 1.0)
    return weights


def weighted_strengths(votes: CrowdVotes, weights: np.ndarray) -> WeightedStrengths:
    """Bradley-Terry-Davidson strengths of `votes`, each weighted by its annotator's weight."""
    problem = Problem(votes)
    m = problem.n_models
    counted = problem.known[problem.c] & (votes.choice != BOTH_BAD)
    rows = len(problem.pa)
    cells = problem.pair[problem.c][counted] * 3 + problem.pick[counted]
    vote_weights = weights[problem.j][counted]
    outcomes = np.bincount(cells, vote_weights, 3 * rows).reshape(rows, 3)
    s, delta = np.zeros(m), 0.0
    iterations, converged = 0, False
    while iterations < MAX_ITERATIONS and rows:
        iterations += 1
        new_s, new_delta = strength_step(problem, outcomes, s, delta)
        change = max(float(np.abs(new_s - s).max(initial=0.0)), abs(new_delta - delta))
        s, delta = new_s, new_delta
        if change < TOLERANCE:
            converged = True
            break
    per_model = np.zeros(m)
    for side in (problem.pa, problem.pb):
        per_model += np.bincount(side, outcomes.sum(axis=1), m)
    compared = np.zeros(m, dtype=bool)
    compared[problem.pa] = compared[problem.pb] = True
    strength = np.full(m, np.nan)
    interval = np.full((m, 2), np.nan)
    if compared.any():
        covariance = np.linalg.inv(btd_information(problem, s, delta, outcomes.sum(axis=1)))
        inside = np.flatnonzero(compared)
        centre = np.eye(len(inside)) - 1 / len(inside)
        spread = centre @ covariance[np.ix_(inside, inside)] @ centre
        strength[inside] = centre @ s[inside]
        half = Z95 * np.sqrt(np.maximum(np.diag(spread), 0.0))
        interval[inside] = np.stack([strength[inside] - half, strength[inside] + half], axis=1)
    return WeightedStrengths(
        strength=strength,
        strength_ci95=interval,
        weighted_votes=per_model,
        weights=weights,
        tie_log_odds=delta,
        iterations=iterations,
        converged=converged or not rows,
    )
