"""A joint crowd model of pairwise votes: each annotator's reliability and position bias and
the models' strengths, fitted together by EM, in two variants that differ in what an honest
vote is (`fit_crowd(votes, truth=...)`).

Common to both (pure numpy, no database; `CrowdVotes.of_columns` reads `stats.VoteColumns`):
a vote of annotator j is honest with probability r_j (the reliability), else a random answer
from the annotator's own habits: neither candidate with probability n_j, else the left side
with probability b_j (the position bias), whatever the candidates are. Honest outcomes follow
a Bradley-Terry-Davidson model of the two models' strengths, softmax(Δ/2, -Δ/2, δ) over
(A better, B better, tie) with Δ = s_A - s_B and δ the log tie propensity; comparisons whose
models are unknown share one free (p_A, p_B, p_tie) instead. Pseudo-counts of `SMOOTHING`
keep r, b, n off 0 and 1; a N(0, 4²) prior on each strength and on δ keeps an unbeaten model,
or outcomes without a tie, finite. Deterministic: a fixed start, no randomness. A spammer's
coin flips end up in the random part (r_j near 0), so they do not compress the strengths.

- `truth="vote"` (the default; crowd_votes.py): every honest vote is its own draw from the
  model, so honest annotators may disagree on a comparison. The latent variable is per vote
  (honest draw or random answer); votes are independent and are the intervals' units. The
  posterior per comparison is the mean of its own outcome chances under a Dirichlet prior
  centred on the model's chances for its pair (flat for unknown models), each vote adding r_j
  to the outcome it names (see crowd_votes.comparison_posterior).
  Since votes are independent, a spammer is told by how its votes fit the strengths and by
  its screen-side habits, never by disagreeing with the comparison's other votes: where the
  models are unknown, r is barely identified (its interval spans most of 0..1).
- `truth="comparison"`: each comparison has one latent outcome, which every honest vote names
  (a right answer). The E-step gives each comparison's posterior over it; comparisons are the
  intervals' units. If honest annotators in fact draw their own outcomes, this variant reads
  their disagreement as unreliability (r near 0.5) and its strengths come out too steep.

Adaptive sampling (a third vote only where the first two split, say) leaves either fit
unbiased: the likelihood is a product over votes given the latent variables, and the policy
that chose where to ask depends only on votes already seen, so its factor carries no parameter
and drops out of the maximisation (the design is ignorable). Raw leave-one-out agreement
instead counts only the comparisons the policy selected, which are disagreements by
construction.

Intervals are 95% Wald intervals from the observed information (Louis' method in
crowd_steps.information; the vote-level likelihood's Hessian written directly in
crowd_votes; the free prior of unknown-model comparisons is held fixed). For r and b they are
on the probability scale, clipped to 0..1: on the logit scale an estimate at a boundary (an
always-left clicker's r near 0, b near 1) would get the whole of 0..1. A share with less than
one expected random answer on one of its sides (that clicker's b and n) is held fixed for the
other intervals and gets its conditional variance; the others' include their pseudo-counts'
curvature. The strengths' covariance is that of the centred strengths. `effective_votes` is
r_j (1 - r_j) / Var(r_j): the votes of known mode (honest or random) that would pin r_j as
precisely; it falls towards 0 as r_j nears 0 or 1, where the interval is the better guide.

With few votes the vote-level fit is biased: a random answer looks like an upset, so it takes
honest r_j below 1 and the strengths about 1.25 times too steep at 3,000 votes over 8 models
(1.06 at 60,000), and its strength intervals cover the truth about 80% of the time, not 95%.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from apps.agreement.crowd_steps import (
    Fitted,
    Problem,
    e_step,
    followed,
    information,
    pair_chances,
    random_table,
    strength_step,
)
from apps.agreement.crowd_votes import fit_votes

if TYPE_CHECKING:
    from apps.agreement.stats import VoteColumns

# A comparison's truth, and the posterior's columns.
TRUTHS = ("a", "b", "tie")
UNKNOWN_MODEL = -1
SMOOTHING = 0.5
MAX_ITERATIONS = 1000
TOLERANCE = 1e-6
Z95 = 1.959963984540054


@dataclass(frozen=True)
class CrowdVotes:
    """Votes on ordinary comparisons as numpy columns, one row per vote.

    `comparison` indexes `comparison_ids`, `annotator` indexes `annotators`; `model_a` and
    `model_b` index `models`, per vote (the comparison's first vote is read), or are
    `UNKNOWN_MODEL`. `choice` is the screen choice, a code into crowd_steps.CHOICES (LEFT,
    RIGHT, TIE, BOTH_BAD); `a_left` says candidate A was on the left, and matters only for
    LEFT and RIGHT.
    """

    comparison: np.ndarray  # intp
    annotator: np.ndarray  # intp
    model_a: np.ndarray  # intp, or UNKNOWN_MODEL
    model_b: np.ndarray  # intp, or UNKNOWN_MODEL
    choice: np.ndarray  # int8
    a_left: np.ndarray  # bool
    comparison_ids: np.ndarray  # int64
    annotators: list[str]
    models: list[str]

    def __len__(self) -> int:
        return len(self.comparison)

    @classmethod
    def of_columns(cls, votes: "VoteColumns") -> "CrowdVotes":
        """The non-gold votes of `stats_votes`' columns. A model named "" is unknown.

        VoteColumns orient options to the candidates (OPTIONS: a, b, tie, both_bad) and keep
        the side (SIDES: None, left, right), so a sided vote tells where A was.
        """
        votes = votes.select(~votes.is_gold)
        option, side = votes.option.astype(np.intp), votes.side.astype(np.intp)
        sided = option < 2
        if np.any(sided & (side == 0)):
            raise ValueError("a vote for a candidate without its screen side")
        choice = np.where(sided, side - 1, option).astype(np.int8)
        a_left = sided & ((option == 0) == (side == 1))
        known = np.array([name != "" for name in votes.models] or [False], dtype=bool)
        model_a = np.where(known[votes.model_a], votes.model_a, UNKNOWN_MODEL)
        model_b = np.where(known[votes.model_b], votes.model_b, UNKNOWN_MODEL)
        ids, comparison = np.unique(votes.comparison, return_inverse=True)
        return cls(
            comparison=comparison.reshape(-1).astype(np.intp),
            annotator=votes.annotator.astype(np.intp),
            model_a=model_a.astype(np.intp),
            model_b=model_b.astype(np.intp),
            choice=choice,
            a_left=a_left,
            comparison_ids=ids.astype(np.int64),
            annotators=list(votes.names),
            models=list(votes.models),
        )


@dataclass(frozen=True)
class CrowdFit:
    """A fitted crowd model. Intervals are 95%, [low, high] per row.

    Per annotator (in `annotators` order): `reliability` r_j, `left_share` b_j (left share of
    the random answers), `neither_share` n_j, `votes`, `effective_votes` (behind r_j, see the
    module's docstring) and `random_side_votes` (behind b_j: the expected number of their
    votes that chose a side at random). Per comparison
    (in `comparison_ids` order): `posterior` over TRUTHS, the comparison's own outcome (see the
    module's docstring for each variant's). Per model (in `models` order):
    `strength` (natural-log Bradley-Terry scale, mean 0 over the models that were compared),
    NaN with `compared` False for a model in no comparison; `weighted_votes` is the sum of r_j
    over the votes on its comparisons. `tie_log_odds` is δ; `tie_share` the chance of an honest
    tie between two equally strong models, e^δ / (2 + e^δ). Per ordered pair of models that
    were compared (`pair_model_a`, `pair_model_b`, indices into `models`): `pair_outcomes`, the
    expected honest outcomes (A better, B better, tie) the strengths and δ were fitted to (a
    vote counts by the chance that it was an honest judgment), and `pair_tie_chance`, the
    fitted chance of an honest tie, smaller the further apart the two strengths are.
    """

    annotators: list[str]
    reliability: np.ndarray
    reliability_ci95: np.ndarray
    left_share: np.ndarray
    left_share_ci95: np.ndarray
    neither_share: np.ndarray
    votes: np.ndarray
    effective_votes: np.ndarray
    random_side_votes: np.ndarray
    comparison_ids: np.ndarray
    posterior: np.ndarray
    models: list[str]
    compared: np.ndarray
    strength: np.ndarray
    strength_ci95: np.ndarray
    weighted_votes: np.ndarray
    tie_log_odds: float
    tie_share: float
    pair_model_a: np.ndarray
    pair_model_b: np.ndarray
    pair_outcomes: np.ndarray
    pair_tie_chance: np.ndarray
    log_likelihood: float
    iterations: int
    converged: bool


def _wald(p: np.ndarray, var: np.ndarray) -> np.ndarray:
    # A negative variance: the likelihood is flat or curves upwards along some direction
    # through this share (r without known models, in the vote-level variant), so the votes do
    # not pin it; the interval is the whole of 0..1 rather than a point.
    half = np.where(var < 0, 1.0, Z95 * np.sqrt(np.abs(var)))
    interval: np.ndarray = np.clip(np.stack([p - half, p + half], axis=1), 0.0, 1.0)
    return interval


def centred_strengths(
    s: np.ndarray, covariance: np.ndarray, compared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The strengths of the compared models centred on their mean, with 95% Wald intervals from
    the covariance of the centred strengths (its leading block: the models); NaN for a model in
    no comparison. The crowd fit's and the weighted leaderboard's (weighted_bt) alike."""
    m = len(compared)
    strength = np.full(m, np.nan)
    interval = np.full((m, 2), np.nan)
    if compared.any():
        inside = np.flatnonzero(compared)
        centre = np.eye(len(inside)) - 1 / len(inside)
        spread = centre @ covariance[np.ix_(inside, inside)] @ centre
        strength[inside] = centre @ s[inside]
        half = Z95 * np.sqrt(np.maximum(np.diag(spread), 0.0))
        interval[inside] = np.stack([strength[inside] - half, strength[inside] + half], axis=1)
    return strength, interval


def fit_crowd(
    votes: CrowdVotes,
    *,
    truth: Literal["vote", "comparison"] = "vote",
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> CrowdFit:
    """Fits the crowd model by EM; deterministic.

    `truth="vote"` (the default, crowd_votes.py): every honest vote is its own draw from the
    Bradley-Terry-Davidson model, so honest annotators may disagree on a comparison without
    losing reliability. That is how people differ on matters of taste, and how the issue's
    simulation and bench/quality.py plant honest annotators; under it the comparison-level
    model reads honest disagreement as unreliability and steepens the strengths.
    `truth="comparison"`: each comparison has one outcome that every honest vote names, the
    better model for comparisons with a right answer (see the module's docstring).
    With mostly unknown models only the comparison-level variant can judge reliability: it
    reads agreement within a comparison, which the vote-level one, whose votes are
    independent, does not.
    """
    problem = Problem(votes)
    if truth == "vote":
        fitted = fit_votes(problem, SMOOTHING, max_iterations, tolerance)
    else:
        fitted = _fit_comparisons(problem, max_iterations, tolerance)
    return _summarise(votes, problem, fitted)


def _fit_comparisons(problem: Problem, max_iterations: int, tolerance: float) -> Fitted:
    a, counts = SMOOTHING, problem.counts
    r, b = np.full(problem.n_annotators, 0.8), np.full(problem.n_annotators, 0.5)
    n = (counts[:, 2] + a) / (counts.sum(axis=1) + 2 * a)
    s, delta, free = np.zeros(problem.n_models), -1.0, np.full(3, 1 / 3)
    unknown = ~problem.known
    converged, iterations = False, 0
    while iterations < max_iterations and not converged:
        iterations += 1
        prior = np.vstack([pair_chances(problem, s, delta), free])
        posterior, _ = e_step(problem, prior, r, random_table(b, n))
        # M-step: votes that followed the truth give r; the rest are the random answers.
        truthful = followed(problem, posterior, r, random_table(b, n))
        random = counts - truthful
        new_r = (truthful.sum(axis=1) + a) / (counts.sum(axis=1) + 2 * a)
        new_b = (random[:, 0] + a) / (random[:, :2].sum(axis=1) + 2 * a)
        new_n = (random[:, 2] + a) / (random.sum(axis=1) + 2 * a)
        new_s, new_delta = strength_step(problem, problem.by_pair(posterior), s, delta)
        if unknown.any():
            free = (posterior[unknown].sum(axis=0) + a) / (unknown.sum() + 3 * a)
        moved = np.abs(np.concatenate([new_r - r, new_b - b, new_n - n, new_s - s]))
        converged = max(float(moved.max(initial=0.0)), abs(new_delta - delta)) < tolerance
        r, b, n, s, delta = new_r, new_b, new_n, new_s, new_delta
    prior = np.vstack([pair_chances(problem, s, delta), free])
    posterior, log_likelihood = e_step(problem, prior, r, random_table(b, n))
    params = (r, b, n, s, delta)
    return Fitted(
        params=params,
        posterior=posterior,
        log_likelihood=log_likelihood,
        info=information(problem, posterior, params),
        random=counts - followed(problem, posterior, r, random_table(b, n)),
        outcomes=problem.by_pair(posterior),
        iterations=iterations,
        converged=converged,
    )


def _summarise(votes: CrowdVotes, problem: Problem, fitted: Fitted) -> CrowdFit:
    r, b, n, s, delta = fitted.params
    m, k, info = problem.n_models, problem.n_annotators, fitted.info
    # A share with less than one expected random answer on one side of it (an always-left
    # clicker's b and n) sits at its pseudo-counts' floor, on the boundary, where the quadratic
    # approximation trades it against r beyond 0..1 and blows up r's interval. Such a share is
    # held fixed for the others' intervals; its own variance is the conditional one.
    sided, answers = fitted.random[:, :2].sum(axis=1), fitted.random.sum(axis=1)
    edge = np.concatenate(
        [np.zeros(m + 1 + k, dtype=bool), np.minimum(b, 1 - b) * sided < 1,
         np.minimum(n, 1 - n) * answers < 1]
    )  # fmt: skip
    # Off the boundary, the pseudo-counts' curvature joins b's and n's: the estimates maximise
    # the penalised likelihood, and with a dozen random answers (an honest annotator's, in the
    # vote-level model) the likelihood alone can curve upwards in them.
    penalty = np.concatenate([np.zeros(m + 1 + k), SMOOTHING / b**2 + SMOOTHING / (1 - b) ** 2,
                              SMOOTHING / n**2 + SMOOTHING / (1 - n) ** 2])  # fmt: skip
    info = info + np.diag(np.where(edge, 0.0, penalty))
    keep = np.flatnonzero(~edge)
    covariance = np.zeros_like(info)
    covariance[np.ix_(keep, keep)] = np.linalg.inv(info[np.ix_(keep, keep)])
    variances = np.diag(covariance).copy()
    variances[edge] = 1 / np.diag(info)[edge]
    var_r, var_b = variances[m + 1 : m + 1 + k], variances[m + 1 + k : m + 1 + 2 * k]
    compared = problem.compared
    strength, strength_ci = centred_strengths(s, covariance, compared)
    on_known = problem.known[problem.c]
    weight = r[problem.j][on_known]
    weighted = np.zeros(m)
    for model in (problem.model_a, problem.model_b):
        weighted += np.bincount(model[problem.c][on_known], weight, m)
    return CrowdFit(
        annotators=list(votes.annotators),
        reliability=r,
        reliability_ci95=_wald(r, var_r),
        left_share=b,
        left_share_ci95=_wald(b, var_b),
        neither_share=n,
        votes=problem.counts.sum(axis=1).astype(np.int64),
        effective_votes=r * (1 - r) / var_r,
        random_side_votes=sided,
        comparison_ids=votes.comparison_ids,
        posterior=fitted.posterior,
        models=list(votes.models),
        compared=compared,
        strength=strength,
        strength_ci95=strength_ci,
        weighted_votes=weighted,
        tie_log_odds=delta,
        tie_share=float(np.exp(delta) / (2 + np.exp(delta))),
        pair_model_a=problem.pa.astype(np.intp),
        pair_model_b=problem.pb.astype(np.intp),
        pair_outcomes=fitted.outcomes,
        pair_tie_chance=pair_chances(problem, s, delta)[:, 2],
        log_likelihood=fitted.log_likelihood,
        iterations=fitted.iterations,
        converged=fitted.converged,
    )
