"""The most any order of comparisons could save, in the cleanest case: how many fewer judgments
than a uniform spread over the model pairs the best fixed spread needs for the same expected
number of misordered pairs.

    .venv/bin/python bench/policy_ceiling.py                  # 8 models, spread 3.0
    .venv/bin/python bench/policy_ceiling.py --spread 1.5 --judgments 600 1200

The case: `--models` models with log-strengths spread evenly over `--spread` units (as in
bench/quality.py and bench/policy_sim.py), every vote an honest Bradley-Terry one with no tie,
the strengths known in advance, any number of votes available on any pair. A spread of votes
over the pairs gives the fitted strengths a covariance, the inverse of the Fisher information
(a vote on pair i, j carries p(1 - p), p the win chance); each pair is misordered with chance
Phi(-|difference| / its error). The uniform spread (what the random policy gives in
expectation) has, after n judgments, some expected number of misordered pairs; the best spread
(found by Powell's method over the simplex) reaches the same number after m; the ceiling is
1 - m/n. The queue faces more than this: it must learn the strengths from the votes, a third
of the votes are the spammers', the audit sample takes its votes first, and a pool of 1,200
comparisons at overlap 3 holds about 900 votes on neighbours. So a policy should expect less.
"""

import argparse
import math

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm


def strengths(models: int, spread: float) -> np.ndarray:
    return np.array([spread * (i / (models - 1) - 0.5) for i in range(models)])


def misordered(strength: np.ndarray, share: np.ndarray, judgments: float) -> float:
    """Expected misordered pairs after `judgments` votes spread over the pairs (i < j, in order)
    by `share`."""
    m = len(strength)
    win = 1 / (1 + np.exp(-(strength[:, None] - strength[None, :])))
    info = np.zeros((m, m))
    k = 0
    for i in range(m):
        for j in range(i + 1, m):
            x = judgments * share[k] * win[i, j] * win[j, i]
            info[i, i] += x
            info[j, j] += x
            info[i, j] -= x
            info[j, i] -= x
            k += 1
    # A ridge on the strengths' common level (which no vote measures, and which cancels from
    # every difference): a pair left without a path of votes between its models then has an
    # error of about 1,000 and a chance of one half, not the 0 a pseudo-inverse would give it.
    cov = np.linalg.inv(info + 1e-6 * np.eye(m))
    total = 0.0
    for i in range(m):
        for j in range(i + 1, m):
            error = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12))
            total += float(norm.cdf(-abs(strength[i] - strength[j]) / error))
    return total


def best_share(strength: np.ndarray, judgments: float) -> np.ndarray:
    """The spread over the pairs with the fewest expected misordered pairs after `judgments`."""
    pairs = len(strength) * (len(strength) - 1) // 2

    def cost(z: np.ndarray) -> float:
        share = np.exp(z - z.max())
        return misordered(strength, share / share.sum(), judgments)

    found = minimize(
        cost, np.zeros(pairs), method="Powell", options={"maxiter": 20000, "xtol": 1e-4}
    )
    share = np.exp(found.x - found.x.max())
    return share / share.sum()


def reached_at(strength: np.ndarray, share: np.ndarray, target: float, most: float) -> float:
    """The judgments (at most `most`) after which `share` expects `target` misordered pairs."""
    low, high = 1.0, most
    for _ in range(60):
        middle = (low + high) / 2
        if misordered(strength, share, middle) > target:
            low = middle
        else:
            high = middle
    return high


def ceiling(strength: np.ndarray, judgments: float) -> tuple[float, float, float]:
    """(the uniform spread's expected misordered pairs after `judgments`, the judgments the best
    spread needs for as few, the share of the best spread on neighbouring models)."""
    pairs = len(strength) * (len(strength) - 1) // 2
    target = misordered(strength, np.full(pairs, 1 / pairs), judgments)
    share = best_share(strength, judgments)
    needed = reached_at(strength, share, target, judgments)
    order = np.argsort(strength)
    place = {int(model): rank for rank, model in enumerate(order)}
    neighbours = 0.0
    k = 0
    for i in range(len(strength)):
        for j in range(i + 1, len(strength)):
            if abs(place[i] - place[j]) == 1:
                neighbours += float(share[k])
            k += 1
    return target, needed, neighbours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--spread", type=float, default=3.0)
    parser.add_argument("--judgments", type=int, nargs="+", default=[300, 600, 1200, 2000])
    args = parser.parse_args()
    strength = strengths(args.models, args.spread)
    print(
        f"{args.models} models, log-strengths spread over {args.spread}; honest votes only, "
        "strengths known, no pool"
    )
    for n in args.judgments:
        target, needed, neighbours = ceiling(strength, n)
        print(
            f"  after {n:>5} judgments spread evenly: {target:.4f} misordered pairs expected; "
            f"the best spread needs {needed:.0f} ({1 - needed / n:.0%} fewer), "
            f"{neighbours:.0%} of them on neighbours"
        )


if __name__ == "__main__":
    main()
