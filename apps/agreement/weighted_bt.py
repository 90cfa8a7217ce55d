"""The reliability-weighted leaderboard: Bradley-Terry strengths fitted to the decisive votes,
each vote weighted by its annotator's reliability (the crowd model's r_j) relative to the most
reliable annotator's.

Why not the crowd model's own strengths: its vote-level mixture reads an honest annotator's
upsets (the weaker model chosen, as Bradley-Terry says happens) partly as random answers, takes
honest r_j below 1 and makes the strengths too steep, and its intervals then miss the truth
(bench/quality.py: they held 6-38% of the true scores at 500 judgments). Here the crowd model
only says whose votes to trust; each trusted vote then counts as one Bradley-Terry draw,
so upsets keep the scale where it is, and a spammer's votes (r_j near 0) count for almost nothing,
so they do not compress it either (the unweighted `bradley_terry` leaderboard's fault).

Only decisive votes count (a side chosen): ties and both-bad votes are left out. Whatever makes
annotators tie, as long as it does not favour a side (a Davidson tie propensity, or ties only
between close models), a decisive honest vote picks A with the Bradley-Terry chance
1 / (1 + e^-(s_A - s_B)), so the decisive votes alone estimate the strengths without bias; a
fitted tie model that does not match how people tie would bend them (one Davidson tie
propensity for all pairs made far pairs too steep when ties happen only between close ones:
bench/quality.py's intervals held 71-88% of the true scores that way, 97% in the same
simulation with ties left out). The tie share is in the crowd section (`crowd.ties`). Comparisons
without two known models are left out too. The fit is Newton's method on the penalised
likelihood (the crowd model's N(0, 4²) prior on the strengths, so an unbeaten model stays
finite), which is concave: one maximum, found from zeros, deterministic. Intervals are 95%
Wald intervals of the centred strengths from the weighted observed information; the weights
are treated as known.
"""

from dataclasses import dataclass

import numpy as np

from apps.agreement.crowd import CrowdVotes, centred_strengths
from apps.agreement.crowd_steps import LEFT, RIGHT, STRENGTH_PRIOR_SD, Problem

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
    """Bradley-Terry strengths of the decisive `votes`, each weighted by its annotator's
    weight."""
    problem = Problem(votes)
    m = problem.n_models
    decisive = (votes.choice == LEFT) | (votes.choice == RIGHT)
    counted = problem.known[problem.c] & decisive
    rows = len(problem.pa)
    cells = problem.pair[problem.c][counted] * 2 + (problem.pick[counted] == 1)
    vote_weights = weights[problem.j][counted]
    # Per ordered pair of models: the weighted decisive votes for A, and for B.
    wins = np.bincount(cells, vote_weights, 2 * rows).reshape(rows, 2)
    s = np.zeros(m)
    iterations, converged = 0, not rows
    while iterations < MAX_ITERATIONS and rows:
        iterations += 1
        gradient, information = _curvature(problem, wins, s)
        step = np.linalg.solve(information, gradient)
        s = s + step
        if float(np.abs(step).max(initial=0.0)) < TOLERANCE:
            converged = True
            break
    per_model = np.zeros(m)
    for side in (problem.pa, problem.pb):
        per_model += np.bincount(side, wins.sum(axis=1), m)
    covariance = np.linalg.inv(_curvature(problem, wins, s)[1])
    strength, interval = centred_strengths(s, covariance, problem.compared)
    return WeightedStrengths(
        strength=strength,
        strength_ci95=interval,
        weighted_votes=per_model,
        weights=weights,
        iterations=iterations,
        converged=converged,
    )


def _curvature(problem: Problem, wins: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The penalised log-likelihood's gradient in s, and its negative Hessian (the observed
    information), for `wins` (A, B) per ordered pair of models."""
    m, pa, pb = problem.n_models, problem.pa, problem.pb
    total = wins.sum(axis=1)
    chance = 1 / (1 + np.exp(-(s[pa] - s[pb])))  # A over B
    residual = wins[:, 0] - total * chance
    gradient: np.ndarray = (
        np.bincount(pa, residual, m) - np.bincount(pb, residual, m) - s / STRENGTH_PRIOR_SD**2
    )
    curve = total * chance * (1 - chance)
    same = np.bincount(pa, curve, m) + np.bincount(pb, curve, m)
    information = np.diag(same + 1 / STRENGTH_PRIOR_SD**2)
    np.add.at(information, (pa, pb), -curve)
    np.add.at(information, (pb, pa), -curve)
    return gradient, information
