"""The steps of `crowd.fit_crowd`: the arrays derived from the votes and the prior, which both
variants share, and the comparison-level variant's E-step, M-step parts and observed
information behind the intervals (the vote-level variant's are in crowd_votes.py).

Notation as in crowd.py. A vote's answer y is left, right or neither (tie or both bad), and
`pick` is the truth it names (A, B or tie). Its chance under its annotator's random answers,
u, depends only on (annotator, y); it has chance r + (1 - r) u when the truth is its pick (a
"hit") and (1 - r) u otherwise. So every per-vote quantity is a table over (annotator, y),
looked up by `jy`, and the prior a table over the ordered pairs of models, looked up by `pair`:
the loops are bincounts and gathers over the votes, never a log or exp per vote.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from apps.agreement.crowd import CrowdVotes

# A vote's screen choice: CrowdVotes.choice codes.
CHOICES = ("left", "right", "tie", "both_bad")
LEFT, RIGHT, TIE, BOTH_BAD = range(len(CHOICES))
STRENGTH_PRIOR_SD = 4.0
# The same for δ: without a tie among the truths (ties only from random answers) its maximum
# is at -∞.
TIE_PRIOR_SD = 4.0
# Added to the information's diagonal: a parameter the votes say nothing about (b of an
# annotator who never chose a side) gets a huge variance instead of a singular matrix.
RIDGE = 1e-9

Params = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]  # r, b, n, s, δ


@dataclass(frozen=True)
class Fitted:
    """What either variant's EM hands to crowd._summarise: the estimates, the posterior per
    comparison, the observed information in (s, δ, r, b, n), per (annotator, answer) the
    expected number of random answers, and per ordered pair of models (`Problem.pa`, `pb`) the
    expected honest outcomes (A, B, tie): the votes' weight the strengths and δ were fitted to."""

    params: Params
    posterior: np.ndarray
    log_likelihood: float
    info: np.ndarray
    random: np.ndarray
    outcomes: np.ndarray
    iterations: int
    converged: bool


class Problem:
    """Index arrays derived once from the votes, shared by the steps."""

    def __init__(self, votes: "CrowdVotes") -> None:
        self.n_comparisons = size = len(votes.comparison_ids)
        self.n_annotators = k = len(votes.annotators)
        self.n_models = m = len(votes.models)
        self.c, self.j = votes.comparison, votes.annotator
        y = np.minimum(votes.choice.astype(np.intp), TIE)
        self.pick = np.where(y == TIE, 2, np.where((y == LEFT) == votes.a_left, 0, 1))
        self.cell = self.c * 3 + self.pick
        self.jy = self.j * 3 + y
        self.counts = np.bincount(self.jy, minlength=3 * k).reshape(k, 3).astype(float)
        # A comparison's models are those of its first vote.
        first = np.full(size, len(votes), dtype=np.intp)
        np.minimum.at(first, self.c, np.arange(len(votes)))
        self.model_a, self.model_b = votes.model_a[first], votes.model_b[first]
        self.known = (self.model_a >= 0) & (self.model_b >= 0)
        # Ordered pairs of models; unknown-model comparisons are the last row.
        pairs, pair = np.unique(
            self.model_a[self.known] * m + self.model_b[self.known], return_inverse=True
        )
        self.pair = np.full(size, len(pairs), dtype=np.intp)
        self.pair[self.known] = pair.reshape(-1)
        self.pa, self.pb = pairs // max(m, 1), pairs % max(m, 1)
        self.pair_counts = np.bincount(self.pair, minlength=len(pairs) + 1).astype(float)[:-1]
        self.compared = np.zeros(m, dtype=bool)
        self.compared[self.pa] = self.compared[self.pb] = True

    def by_pair(self, posterior: np.ndarray) -> np.ndarray:
        """The posteriors summed over each ordered pair of models (pairs x truths)."""
        rows = len(self.pa) + 1
        flat = self.pair[:, None] * 3 + np.arange(3)
        return np.bincount(flat.reshape(-1), posterior.reshape(-1), 3 * rows).reshape(rows, 3)[:-1]


def random_table(b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """u by (annotator, answer): left (1 - n) b, right (1 - n)(1 - b), neither n."""
    return np.stack([(1 - n) * b, (1 - n) * (1 - b), n], axis=1)


def pair_chances(problem: Problem, s: np.ndarray, delta: float) -> np.ndarray:
    """The Bradley-Terry-Davidson prior per ordered pair: softmax(Δ/2, -Δ/2, δ)."""
    half = (s[problem.pa] - s[problem.pb]) / 2
    logits = np.stack([half, -half, np.full_like(half, delta)], axis=1)
    chances = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = chances / chances.sum(axis=1, keepdims=True)
    return out


def e_step(
    problem: Problem, prior: np.ndarray, r: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, float]:
    """Posterior over truths per comparison, and the marginal log-likelihood. `prior` is the
    prior per pair with the unknown-model prior as its last row."""
    miss = np.log((1 - r[:, None]) * u)
    hit = np.log(r[:, None] + (1 - r[:, None]) * u)
    scores = np.log(prior)[problem.pair]
    scores += np.bincount(problem.c, miss.reshape(-1)[problem.jy], problem.n_comparisons)[:, None]
    size = 3 * problem.n_comparisons
    scores += np.bincount(problem.cell, (hit - miss).reshape(-1)[problem.jy], size).reshape(-1, 3)
    # Column by column: numpy's reductions along a short last axis are slow.
    peak = np.maximum(np.maximum(scores[:, 0], scores[:, 1]), scores[:, 2])[:, None]
    weights = np.exp(scores - peak)
    total = (weights[:, 0] + weights[:, 1] + weights[:, 2])[:, None]
    return weights / total, float((peak + np.log(total)).sum())


def followed(problem: Problem, posterior: np.ndarray, r: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per (annotator, answer), the expected number of votes that followed the truth: a vote
    can only if the truth is its pick."""
    share = (r[:, None] / (r[:, None] + (1 - r[:, None]) * u)).reshape(-1)[problem.jy]
    weights = posterior.reshape(-1)[problem.cell] * share
    return np.bincount(problem.jy, weights, 3 * problem.n_annotators).reshape(-1, 3)


def btd_information(problem: Problem, s: np.ndarray, delta: float, w: np.ndarray) -> np.ndarray:
    """The negative Hessian of the Bradley-Terry-Davidson log prior in (s, δ), with the
    N(0, STRENGTH_PRIOR_SD²) and N(0, TIE_PRIOR_SD²) priors, for `w` outcomes per ordered pair;
    it does not depend on which outcomes they are."""
    m, pa, pb = problem.n_models, problem.pa, problem.pb
    p = pair_chances(problem, s, delta)
    diff = p[:, 0] - p[:, 1]
    h_dd = w * ((p[:, 0] + p[:, 1]) - diff**2) / 4  # in (Δ, δ); Δ = s_A - s_B
    h_dt = -w * diff * p[:, 2] / 2
    same = np.concatenate([pa * m + pa, pb * m + pb])
    cross = np.concatenate([pa * m + pb, pb * m + pa])
    twice = np.concatenate([h_dd, h_dd])
    info = np.zeros((m + 1, m + 1))
    info[:m, :m] = (np.bincount(same, twice, m * m) - np.bincount(cross, twice, m * m)).reshape(
        m, m
    ) + np.eye(m) / STRENGTH_PRIOR_SD**2
    info[:m, m] = info[m, :m] = np.bincount(pa, h_dt, m) - np.bincount(pb, h_dt, m)
    info[m, m] = float((w * p[:, 2] * (1 - p[:, 2])).sum()) + 1 / TIE_PRIOR_SD**2
    return info


def strength_step(
    problem: Problem, q: np.ndarray, s: np.ndarray, delta: float
) -> tuple[np.ndarray, float]:
    """One Newton step of the weighted Bradley-Terry-Davidson fit of (s, δ) to `q`, the
    weighted outcomes (A, B, tie) per ordered pair of models."""
    m, pa, pb, w = problem.n_models, problem.pa, problem.pb, q.sum(axis=1)
    p = pair_chances(problem, s, delta)
    d_delta = (q[:, 0] - q[:, 1] - w * (p[:, 0] - p[:, 1])) / 2
    grad = np.zeros(m + 1)
    grad[:m] = np.bincount(pa, d_delta, m) - np.bincount(pb, d_delta, m) - s / STRENGTH_PRIOR_SD**2
    grad[m] = float((q[:, 2] - w * p[:, 2]).sum()) - delta / TIE_PRIOR_SD**2
    step = np.linalg.solve(btd_information(problem, s, delta, w), grad)
    return s + step[:m], delta + float(step[m])


def information(problem: Problem, posterior: np.ndarray, params: Params) -> np.ndarray:
    """Observed information of (s, δ, r, b, n) by Louis' method: the complete-data information
    (truths known) expected under the posterior, less the information the unknown truths take
    away (Σ_c of the posterior covariance of comparison c's complete-data score). The
    pseudo-counts' curvature is left out: it would shrink the interval of an estimate at a
    boundary (an always-left clicker's r near 0) to nothing."""
    r, b, n, s, delta = params
    m, k = problem.n_models, problem.n_annotators
    width = m + 1 + 3 * k
    u = random_table(b, n)
    rr = r[:, None]
    # d u / d b and d u / d n by answer (left, right, neither); d²u / db dn is -sign.
    sign = np.array([1.0, -1.0, 0.0])
    u_b = (1 - n)[:, None] * sign
    u_n = np.stack([-b, b - 1, np.ones(k)], axis=1)
    chance = {1: rr + (1 - rr) * u, 0: (1 - rr) * u}
    # The score of one vote in (r, b, n), by (annotator, answer), given a hit or a miss.
    score = {
        hit: np.stack([hit - u, (1 - rr) * u_b, (1 - rr) * u_n]) / chance[hit] for hit in (1, 0)
    }
    second = np.zeros((3, 3, k, 3))  # d²P, by (annotator, answer)
    second[0, 1] = second[1, 0] = -u_b
    second[0, 2] = second[2, 0] = -u_n
    second[1, 2] = second[2, 1] = -(1 - rr) * sign
    hits = np.bincount(problem.jy, posterior.reshape(-1)[problem.cell], 3 * k).reshape(k, 3)
    weight = {1: hits, 0: problem.counts - hits}
    info = np.zeros((width, width))
    info[: m + 1, : m + 1] = btd_information(problem, s, delta, problem.pair_counts)
    first = m + 1 + np.arange(k)
    # A vote's complete-data information given a hit or a miss: -d² log P = g g' - d²P / P.
    for x in range(3):
        for z in range(3):
            block = sum(
                (weight[hit] * (score[hit][x] * score[hit][z] - second[x, z] / chance[hit])).sum(
                    axis=1
                )
                for hit in (1, 0)
            )
            info[first + x * k, first + z * k] += block
    info -= _missing_information(problem, posterior, score, width)
    info[np.diag_indices(width)] += RIDGE
    return info


def _missing_information(
    problem: Problem, posterior: np.ndarray, score: dict[int, np.ndarray], width: int
) -> np.ndarray:
    """Σ_c Cov(g_c(t)) under comparison c's posterior, g_c(t) its complete-data score.

    g_c(t) is a sum of "slots", each a vector over 3 columns times a function of t that is
    linear in the truth's indicators (weights w): a vote's score is its miss score plus
    (hit - miss) times 1[t = pick]; the prior's is its Δ part times 1[A] - 1[B] and its δ part
    times 1[tie], plus constants. So Cov = Σ over pairs of slots in a comparison of
    vals_u vals_v' w_u' (diag q - q q') w_v: a few gathers and one bincount, no dense
    comparisons x parameters matrix (whose BLAS products stall on a busy machine).
    """
    m, k = problem.n_models, problem.n_annotators
    known = np.flatnonzero(problem.known)
    model_a, model_b = problem.model_a[known], problem.model_b[known]
    tie = np.full(len(known), m)
    jy = problem.jy
    columns = np.concatenate(
        [
            np.stack([model_a, model_b, tie], axis=1),
            np.stack([tie, tie, tie], axis=1),
            m + 1 + problem.j[:, None] + np.arange(3) * k,
        ]
    )
    values = np.concatenate(
        [
            np.tile([0.5, -0.5, 0.0], (len(known), 1)),
            np.tile([1.0, 0.0, 0.0], (len(known), 1)),
            (score[1] - score[0]).reshape(3, -1)[:, jy].T,
        ]
    )
    weights = np.concatenate(
        [
            np.tile([1.0, -1.0, 0.0], (len(known), 1)),
            np.tile([0.0, 0.0, 1.0], (len(known), 1)),
            np.eye(3)[problem.pick],
        ]
    )
    comparison = np.concatenate([known, known, problem.c])
    order = np.argsort(comparison, kind="stable")
    columns, values, weights, comparison = (
        columns[order], values[order], weights[order], comparison[order]
    )  # fmt: skip
    # Every ordered pair of slots of the same comparison.
    length = np.bincount(comparison, minlength=problem.n_comparisons)
    start = np.cumsum(length) - length
    repeat = length[comparison]
    left = np.repeat(np.arange(len(comparison)), repeat)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    right = start[comparison[left]] + offset
    q = posterior[comparison[left]]
    w_left, w_right = weights[left], weights[right]
    cov = (w_left * q * w_right).sum(axis=1) - (w_left * q).sum(axis=1) * (w_right * q).sum(axis=1)
    cells = columns[left][:, :, None] * width + columns[right][:, None, :]
    products = values[left][:, :, None] * values[right][:, None, :] * cov[:, None, None]
    missing = np.bincount(cells.reshape(-1), products.reshape(-1), width * width)
    return missing.reshape(width, width)
