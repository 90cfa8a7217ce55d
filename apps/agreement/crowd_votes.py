"""The vote-level variant of the crowd model (`crowd.fit_crowd(votes, truth="vote")`).

Each vote of annotator j, independently, is with probability r_j an honest draw from the
Bradley-Terry-Davidson model of the comparison's two models, softmax(Δ/2, -Δ/2, δ) over
(A better, B better, tie), shown on the screen by where A was; otherwise a random answer from
the annotator's habits (neither candidate n_j, else left b_j). Comparisons of unknown models
share one free (p_A, p_B, p_tie) instead. There is no outcome per comparison: the latent
variable is per vote (honest draw or random answer), so votes are independent given the
parameters and are the units of the intervals.

A vote's chance depends only on (annotator, answer, ordered pair of models, the truth it names),
so the votes are grouped into those cells once and EM works on the cells. E-step: each cell's
responsibility, the chance that its votes were honest draws, r p / (r p + (1 - r) u). M-step:
r, b, n in closed form (with crowd.SMOOTHING's pseudo-counts), (s, δ) by a Newton step of the
responsibility-weighted Bradley-Terry-Davidson fit with the light priors of crowd_steps, the
free prior of unknown models as the weighted share of their honest picks.

The information is that of the votes' likelihood written directly (a product of independent
two-part mixtures: Σ_votes g g' / P² - H / P, g and H the gradient and Hessian of the vote's
chance), which is what Louis' method gives here without the detour through the latent part.
"""

import numpy as np

from apps.agreement.crowd_steps import (
    RIDGE,
    STRENGTH_PRIOR_SD,
    TIE_PRIOR_SD,
    Fitted,
    Params,
    Problem,
    pair_chances,
    random_table,
    strength_step,
)

# For the posterior per comparison: the strengths are worth this many of its honest votes (a
# Dirichlet prior of mean the model's chances and this total).
PRIOR_VOTES = 3.0


class Cells:
    """The votes grouped by (annotator, answer, ordered pair of models, pick)."""

    def __init__(self, problem: Problem) -> None:
        rows = len(problem.pa) + 1  # the last row: comparisons of unknown models
        key = (problem.jy * rows + problem.pair[problem.c]) * 3 + problem.pick
        keys, count = np.unique(key, return_counts=True)
        self.pick, self.pair = keys % 3, keys // 3 % rows
        self.jy = keys // 3 // rows
        self.j, self.y = self.jy // 3, self.jy % 3
        self.count = count.astype(float)
        self.rows = rows
        self.known = self.pair < rows - 1


def _prior(problem: Problem, s: np.ndarray, delta: float, free: np.ndarray) -> np.ndarray:
    return np.vstack([pair_chances(problem, s, delta), free])


def _honest(
    cells: Cells, prior: np.ndarray, r: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: the chance of an honest draw naming its pick, that of the vote, and the
    expected number of its votes that were honest draws (the E-step)."""
    p = prior[cells.pair, cells.pick]
    rj = r[cells.j]
    chance = rj * p + (1 - rj) * u.reshape(-1)[cells.jy]
    return p, chance, cells.count * rj * p / chance


def fit_votes(problem: Problem, smoothing: float, max_iterations: int, tolerance: float) -> Fitted:
    """EM for the vote-level model; deterministic (a fixed start)."""
    cells, a, counts = Cells(problem), smoothing, problem.counts
    k = problem.n_annotators
    r, b = np.full(k, 0.8), np.full(k, 0.5)
    n = (counts[:, 2] + a) / (counts.sum(axis=1) + 2 * a)
    s, delta, free = np.zeros(problem.n_models), -1.0, np.full(3, 1 / 3)
    converged, iterations = False, 0
    while iterations < max_iterations and not converged:
        iterations += 1
        _, _, honest = _honest(cells, _prior(problem, s, delta, free), r, random_table(b, n))
        drawn = np.bincount(cells.jy, honest, 3 * k).reshape(k, 3)
        random = counts - drawn
        new_r = (drawn.sum(axis=1) + a) / (counts.sum(axis=1) + 2 * a)
        new_b = (random[:, 0] + a) / (random[:, :2].sum(axis=1) + 2 * a)
        new_n = (random[:, 2] + a) / (random.sum(axis=1) + 2 * a)
        q = np.bincount(cells.pair * 3 + cells.pick, honest, 3 * cells.rows).reshape(-1, 3)
        new_s, new_delta = strength_step(problem, q[:-1], s, delta)
        if q[-1].sum() > 0:
            free = (q[-1] + a) / (q[-1].sum() + 3 * a)
        moved = np.abs(np.concatenate([new_r - r, new_b - b, new_n - n, new_s - s]))
        converged = max(float(moved.max(initial=0.0)), abs(new_delta - delta)) < tolerance
        r, b, n, s, delta = new_r, new_b, new_n, new_s, new_delta
    params = (r, b, n, s, delta)
    prior = _prior(problem, s, delta, free)
    _, chance, honest = _honest(cells, prior, r, random_table(b, n))
    random = counts - np.bincount(cells.jy, honest, 3 * k).reshape(k, 3)
    q = np.bincount(cells.pair * 3 + cells.pick, honest, 3 * cells.rows).reshape(-1, 3)
    return Fitted(
        params=params,
        posterior=comparison_posterior(problem, prior, r),
        log_likelihood=float((cells.count * np.log(chance)).sum()),
        info=vote_information(problem, cells, params, prior),
        random=random,
        outcomes=q[:-1],
        iterations=iterations,
        converged=converged,
    )


def comparison_posterior(problem: Problem, prior: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per comparison, the chances of (A better, B better, tie) on that comparison.

    The comparison's own outcome chances get a Dirichlet prior of mean the fitted model's
    chances for its pair of models (the free shares for unknown models are replaced by 1/3
    each, so that A against B is a Beta(1, 1) there) and weight PRIOR_VOTES; each vote adds r_j
    to the outcome it names; the result is the posterior mean. So with known models the
    strengths dominate a thinly voted comparison, and a comparison's votes, weighted by their
    annotators' reliability, move it away from its pair's average; a spammer's votes weigh
    nothing. Honest votes are draws, not copies of one truth, so they are not multiplied
    together as in the comparison-level model: ten votes for A are worth ten pseudo-counts,
    not certainty.
    """
    mean = prior[problem.pair].copy()
    mean[~problem.known] = 1 / 3
    size = problem.n_comparisons
    weighted = np.bincount(problem.cell, r[problem.j], 3 * size).reshape(size, 3)
    total = PRIOR_VOTES + weighted.sum(axis=1, keepdims=True)
    out: np.ndarray = (PRIOR_VOTES * mean + weighted) / total
    return out


def vote_information(
    problem: Problem, cells: Cells, params: Params, prior: np.ndarray
) -> np.ndarray:
    """Observed information of (s, δ, r, b, n) from the votes' likelihood and the priors of s
    and δ; the pseudo-counts' curvature is left out (as in crowd_steps.information), and so is
    the free prior of unknown models (held fixed)."""
    r, b, n, _, _ = params
    m, k = problem.n_models, problem.n_annotators
    width = m + 1 + 3 * k
    u = random_table(b, n)
    p, chance, _ = _honest(cells, prior, r, u)
    rj, uj, j = r[cells.j], u.reshape(-1)[cells.jy], cells.j
    sign = np.array([1.0, -1.0, 0.0])[cells.y]
    u_b = (1 - n[j]) * sign
    u_n = np.stack([-b[j], b[j] - 1, np.ones(len(j))], axis=1)[np.arange(len(j)), cells.y]
    # p's derivatives along the logit directions e (Δ: ±1/2, 0) and f (δ: 0, 0, 1).
    full = prior[cells.pair]
    e = np.array([0.5, -0.5, 0.0])[cells.pick]
    f = (cells.pick == 2).astype(float)
    e_bar, f_bar = (full[:, 0] - full[:, 1]) / 2, full[:, 2]
    cov_ee = (full[:, 0] + full[:, 1]) / 4 - e_bar**2
    cov_ef, cov_ff = -e_bar * f_bar, f_bar * (1 - f_bar)
    de, df = e - e_bar, f - f_bar
    known = cells.known.astype(float)
    p_d, p_t = known * p * de, known * p * df
    p_dd = known * p * (de * de - cov_ee)
    p_dt = known * p * (de * df - cov_ef)
    p_tt = known * p * (df * df - cov_ff)
    size = len(p)
    g = np.stack([rj * p_d, rj * p_t, p - uj, (1 - rj) * u_b, (1 - rj) * u_n], axis=1)
    h = np.zeros((size, 5, 5))
    h[:, 0, 0], h[:, 0, 1], h[:, 1, 1] = rj * p_dd, rj * p_dt, rj * p_tt
    h[:, 0, 2], h[:, 1, 2] = p_d, p_t
    h[:, 2, 3], h[:, 2, 4], h[:, 3, 4] = -u_b, -u_n, -(1 - rj) * sign
    h = h + np.triu(h, 1).transpose(0, 2, 1)
    # -d² log P = g g' / P² - H / P, per vote, in (Δ, δ, r, b, n).
    local = g[:, :, None] * g[:, None, :] / chance[:, None, None] ** 2 - h / chance[:, None, None]
    local *= cells.count[:, None, None]
    # Δ = s_A - s_B: to (s_A, s_B, δ, r_j, b_j, n_j).
    lift = np.zeros((size, 6, 5))
    lift[:, 0, 0], lift[:, 1, 0] = 1.0, -1.0
    lift[:, 2:, 1:] = np.eye(4)
    blocks = lift @ local @ lift.transpose(0, 2, 1)
    # Unknown models' cells have no strength terms: any column will do for them.
    model_a = model_b = np.full(size, m)
    if len(problem.pa):
        row = np.minimum(cells.pair, len(problem.pa) - 1)
        model_a, model_b = problem.pa[row], problem.pb[row]
    columns = np.stack(
        [model_a, model_b, np.full(size, m), m + 1 + j, m + 1 + k + j, m + 1 + 2 * k + j], axis=1
    )
    cellsx = columns[:, :, None] * width + columns[:, None, :]
    info: np.ndarray = np.bincount(cellsx.reshape(-1), blocks.reshape(-1), width * width)
    info = info.reshape(width, width)
    prior_curvature = np.r_[np.full(m, STRENGTH_PRIOR_SD**-2), TIE_PRIOR_SD**-2, np.zeros(3 * k)]
    info += np.diag(prior_curvature + RIDGE)
    return info
