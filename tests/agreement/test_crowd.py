"""The crowd model (apps/agreement/crowd.py), without a database.

Checked three ways: small cases by hand (the arithmetic is in the comments); the fit against a
likelihood written out here from the model's definition (its value, its stationary point, and
its numerical Hessian for the information behind the intervals); and seeded simulations with
planted annotators whose truth is known, against the plain Bradley-Terry of stats.py and raw
leave-one-out agreement.
"""

import math
import time

import numpy as np
import pytest
from scipy.stats import kendalltau

from apps.agreement.crowd import UNKNOWN_MODEL, CrowdVotes, fit_crowd
from apps.agreement.crowd_steps import (
    BOTH_BAD,
    LEFT,
    RIGHT,
    TIE,
    Problem,
    e_step,
    information,
    pair_chances,
    random_table,
)
from apps.agreement.stats import Battles, Vote, VoteColumns, bradley_terry, leave_one_out

A, B, T = 0, 1, 2  # truths
PRIOR_SD = 4.0  # STRENGTH_PRIOR_SD and TIE_PRIOR_SD, restated: the references are written out here
SMOOTHING = 0.5


def votes_of(rows, *, models=None, names=None, model_names=None):
    """CrowdVotes from (comparison, annotator, choice, a_left) rows; `models` gives each
    comparison's (model_a, model_b), unknown when None."""
    rows = np.array(rows, dtype=np.int64).reshape(-1, 4)
    comparison = rows[:, 0]
    pairs = np.full((comparison.max() + 1, 2), UNKNOWN_MODEL) if models is None else models
    size = int(rows[:, 1].max()) + 1
    return CrowdVotes(
        comparison=comparison.astype(np.intp),
        annotator=rows[:, 1].astype(np.intp),
        model_a=np.asarray(pairs)[comparison, 0].astype(np.intp),
        model_b=np.asarray(pairs)[comparison, 1].astype(np.intp),
        choice=rows[:, 2].astype(np.int8),
        a_left=rows[:, 3].astype(bool),
        comparison_ids=np.arange(comparison.max() + 1, dtype=np.int64),
        annotators=names or [f"a{j}" for j in range(size)],
        models=model_names or ([] if models is None else [f"m{i}" for i in range(8)]),
    )


# -- by hand -------------------------------------------------------------------------------------


def test_the_bradley_terry_davidson_prior_by_hand():
    # s = (ln 2, 0), δ = 0: logits (ln 2 / 2, -ln 2 / 2, 0), so weights √2, 1/√2, 1.
    votes = votes_of([(0, 0, LEFT, 1)], models=[(0, 1)], model_names=["m0", "m1"])
    chances = pair_chances(Problem(votes), np.array([math.log(2), 0.0]), 0.0)
    weights = np.array([math.sqrt(2), 1 / math.sqrt(2), 1.0])
    np.testing.assert_allclose(chances, [weights / weights.sum()])


def test_the_posterior_of_two_votes_by_hand():
    # One comparison, models unknown, a flat prior. Random answers: n = 0.2, b = 0.5, so a
    # sided answer has u = 0.8 * 0.5 = 0.4. Annotator 0 (r = 0.8) clicks left with A on the
    # left: 0.8 + 0.2 * 0.4 = 0.88 if A is better, 0.2 * 0.4 = 0.08 otherwise. Annotator 1
    # (r = 0.5) clicks right, naming B: 0.5 + 0.5 * 0.4 = 0.7 if B, 0.2 otherwise.
    # Posterior ∝ (0.88 * 0.2, 0.08 * 0.7, 0.08 * 0.2) = (0.176, 0.056, 0.016), sum 0.248.
    votes = votes_of([(0, 0, LEFT, 1), (0, 1, RIGHT, 1)])
    problem = Problem(votes)
    r, u = np.array([0.8, 0.5]), random_table(np.full(2, 0.5), np.full(2, 0.2))
    prior = np.vstack([pair_chances(problem, np.zeros(0), 0.0), np.full(3, 1 / 3)])
    posterior, log_likelihood = e_step(problem, prior, r, u)
    np.testing.assert_allclose(posterior, [[0.176 / 0.248, 0.056 / 0.248, 0.016 / 0.248]])
    assert log_likelihood == pytest.approx(math.log(0.248 / 3))
    # The same clicks with B on the left name the other candidates: ∝ (0.08 * 0.7, 0.88 * 0.2,
    # 0.08 * 0.2). A tie and a both-bad vote are the same answer, "neither": u = n = 0.2, so
    # 0.8 + 0.2 * 0.2 = 0.84 if a tie, 0.04 otherwise; with annotator 1's tie likewise 0.6 and
    # 0.1: ∝ (0.04 * 0.1, 0.04 * 0.1, 0.84 * 0.6).
    swapped = Problem(votes_of([(0, 0, LEFT, 0), (0, 1, RIGHT, 0)]))
    np.testing.assert_allclose(
        e_step(swapped, prior, r, u)[0], [[0.056 / 0.248, 0.176 / 0.248, 0.016 / 0.248]]
    )
    neither = Problem(votes_of([(0, 0, BOTH_BAD, 1), (0, 1, TIE, 0)]))
    expected = np.array([0.004, 0.004, 0.504])
    np.testing.assert_allclose(e_step(neither, prior, r, u)[0], [expected / expected.sum()])


def test_two_annotators_who_always_agree():
    # Two annotators agree on 20 comparisons of unknown models (A better on 12, B on 8, sides
    # alternating). Each vote follows the truth with a chance of at most 1, so r is at most
    # (N + a) / (N + 2a) = 20.5 / 21; two random answers agree only by chance, so it comes
    # close. Every posterior names the pick they agreed on.
    rows = []
    for c in range(20):
        choice = LEFT if (c < 12) == (c % 2 == 0) else RIGHT
        rows += [(c, 0, choice, c % 2 == 0), (c, 1, choice, c % 2 == 0)]
    fit = fit_crowd(votes_of(rows), tolerance=1e-10, truth="comparison")
    assert fit.reliability[0] == fit.reliability[1]
    assert 0.95 < fit.reliability[0] < 20.5 / 21
    assert (fit.posterior.argmax(axis=1) == np.r_[np.zeros(12), np.ones(8)]).all()
    assert fit.posterior.max(axis=1).min() > 0.95
    assert not fit.compared.any() and fit.strength.shape == (0,)


@pytest.mark.parametrize("truth", ["vote", "comparison"])
def test_ties_only_give_equal_strengths_and_a_tie_share_near_one(truth):
    # Three models in a ring, 30 comparisons, three annotators who all say tie every time. The
    # outcomes are symmetric in the models, so the strengths are equal (0 once centred); every
    # honest outcome is a tie, so each pair's honest tie share is 1 and the tie share e^δ/(2+e^δ)
    # comes near 1 (the N(0, 4²) prior on δ keeps it finite).
    models = np.array([(c % 3, (c + 1) % 3) for c in range(30)])
    rows = [(c, j, TIE, 1) for c in range(30) for j in range(3)]
    fit = fit_crowd(votes_of(rows, models=models, model_names=["m0", "m1", "m2"]), truth=truth)
    np.testing.assert_allclose(fit.strength, 0.0, atol=1e-9)
    assert fit.tie_share == pytest.approx(
        math.exp(fit.tie_log_odds) / (2 + math.exp(fit.tie_log_odds))
    )
    assert fit.tie_share > 0.98
    assert sorted(zip(fit.pair_model_a, fit.pair_model_b, strict=True)) == [(0, 1), (1, 2), (2, 0)]
    outcomes = fit.pair_outcomes
    np.testing.assert_allclose(outcomes[:, 2] / outcomes.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(fit.pair_tie_chance, fit.tie_share)  # equal strengths


def test_no_ties_give_a_small_tie_share_and_ties_are_used():
    # The same ring, A always better (the sides alternate): no tie, so the tie share is small;
    # the strengths then tie in the ring's symmetry. Turning a third of the votes into ties
    # raises the tie share (the fit uses them), and the honest tie share per pair follows. The
    # ties are spread over the annotators (one per comparison, a third of each one's votes):
    # one annotator who always says tie is read as a habit of random answers (r near 0).
    models = np.array([(c % 3, (c + 1) % 3) for c in range(30)])
    names = ["m0", "m1", "m2"]
    decisive = [(c, j, LEFT if c % 2 else RIGHT, c % 2) for c in range(30) for j in range(3)]
    fit = fit_crowd(votes_of(decisive, models=models, model_names=names))
    assert fit.tie_share < 0.05
    some = [(c, j, TIE, 1) if (c + j) % 3 == 0 else (c, j, y, left) for c, j, y, left in decisive]
    tied = fit_crowd(votes_of(some, models=models, model_names=names))
    assert 0.1 < tied.tie_share < 0.5  # some ties read as random answers (r near 0.5)
    shares = tied.pair_outcomes[:, 2] / tied.pair_outcomes.sum(axis=1)
    np.testing.assert_allclose(shares, shares[0])
    assert 0.1 < shares[0] < 0.45


# -- against the likelihood written out ----------------------------------------------------------


def reference_log_likelihood(votes, r, b, n, s, delta):
    """log Π_c Σ_t prior_t Π_(votes of c) P(vote | t), from the model's definition."""
    total = 0.0
    for c in range(len(votes.comparison_ids)):
        mine = np.flatnonzero(votes.comparison == c)
        ma, mb = votes.model_a[mine[0]], votes.model_b[mine[0]]
        weights = np.exp([(s[ma] - s[mb]) / 2, (s[mb] - s[ma]) / 2, delta])
        chances = weights / weights.sum()
        for v in mine:
            j, choice, a_left = votes.annotator[v], votes.choice[v], votes.a_left[v]
            if choice in (TIE, BOTH_BAD):
                named, random = T, n[j]
            else:
                named = A if (choice == LEFT) == a_left else B
                random = (1 - n[j]) * (b[j] if choice == LEFT else 1 - b[j])
            chances = chances * np.array(
                [r[j] * (t == named) + (1 - r[j]) * random for t in (A, B, T)]
            )
        total += math.log(chances.sum())
    return total


def random_votes(seed, comparisons=40, annotators=4, models=3):
    rng = np.random.default_rng(seed)
    pairs = np.array([rng.choice(models, 2, replace=False) for _ in range(comparisons)])
    rows = []
    for c in range(comparisons):
        for j in rng.choice(annotators, 3, replace=False):
            truthful = rng.random() < 0.7
            better = pairs[c, 0] < pairs[c, 1]  # the lower index is the better model
            a_left = bool(rng.random() < 0.5)
            if truthful:
                choice = LEFT if better == a_left else RIGHT
            else:
                choice = rng.choice([LEFT, RIGHT, TIE, BOTH_BAD])
            rows.append((c, j, choice, a_left))
    return votes_of(rows, models=pairs, model_names=[f"m{i}" for i in range(models)])


def fitted(fit):
    return fit.reliability, fit.left_share, fit.neither_share, fit.strength, fit.tie_log_odds


@pytest.mark.parametrize("seed", [1, 2])
def test_the_fit_maximises_the_likelihood_written_out(seed):
    votes = random_votes(seed)
    fit = fit_crowd(votes, tolerance=1e-10, truth="comparison")
    assert fit.converged
    r, b, n, s, delta = fitted(fit)
    assert fit.log_likelihood == pytest.approx(reference_log_likelihood(votes, r, b, n, s, delta))

    def objective(x):
        k = len(r)
        rr, bb, nn, ss, dd = x[:k], x[k : 2 * k], x[2 * k : 3 * k], x[3 * k : -1], x[-1]
        shares = np.concatenate([rr, bb, nn])
        penalty = SMOOTHING * np.log(shares * (1 - shares)).sum()
        penalty -= ((ss**2).sum() + dd**2) / 2 / PRIOR_SD**2
        return reference_log_likelihood(votes, rr, bb, nn, ss, dd) + penalty

    # EM's fixed point is the penalised likelihood's maximum: its gradient vanishes.
    x = np.concatenate([r, b, n, s, [delta]])
    step = 1e-6
    gradient = [
        (objective(x + step * e) - objective(x - step * e)) / (2 * step) for e in np.eye(len(x))
    ]
    np.testing.assert_allclose(gradient, 0, atol=1e-4)


def posterior_hessian(reference, votes, r, b, n, s, delta):
    """The numerical Hessian of `reference(votes, r, b, n, s, delta)`, a log-likelihood written
    out, plus the N(0, PRIOR_SD²) priors of s and δ, at the given point, in the order
    (s, δ, r, b, n): what the intervals' information must equal, negated."""
    k, m = len(r), len(s)

    def log_likelihood(x):
        ss, dd = x[:m], x[m]
        rr, bb, nn = x[m + 1 : m + 1 + k], x[m + 1 + k : m + 1 + 2 * k], x[m + 1 + 2 * k :]
        prior = ((ss**2).sum() + dd**2) / 2 / PRIOR_SD**2
        return reference(votes, rr, bb, nn, ss, dd) - prior

    x = np.concatenate([s, [delta], r, b, n])
    step = 1e-4
    eye = np.eye(len(x)) * step
    return np.array(
        [
            [
                (
                    log_likelihood(x + eye[i] + eye[j])
                    - log_likelihood(x + eye[i] - eye[j])
                    - log_likelihood(x - eye[i] + eye[j])
                    + log_likelihood(x - eye[i] - eye[j])
                )
                / (4 * step * step)
                for j in range(len(x))
            ]
            for i in range(len(x))
        ]
    )


def test_the_information_is_the_likelihoods_curvature():
    # Louis' method against a numerical Hessian of the likelihood written out (plus the priors
    # of s and δ), at the fitted point, in the order (s, δ, r, b, n).
    votes = random_votes(3, comparisons=30)
    fit = fit_crowd(votes, tolerance=1e-10, truth="comparison")
    r, b, n, s, delta = fitted(fit)
    hessian = posterior_hessian(reference_log_likelihood, votes, r, b, n, s, delta)
    louis = information(Problem(votes), fit.posterior, (r, b, n, s, delta))
    np.testing.assert_allclose(louis, -hessian, atol=2e-3 * np.abs(hessian).max())


# -- the adapter ---------------------------------------------------------------------------------


def v(comparison, annotator, option, side, models=("m1", "m2"), is_gold=False):
    return Vote(
        comparison=comparison,
        annotator=annotator,
        option=option,
        side=side,
        strength=None,
        model_a=models[0],
        model_b=models[1],
        is_gold=is_gold,
        gold_correct=None,
        duration_ms=None,
    )


def test_votes_from_the_statistics_columns():
    columns = VoteColumns.of(
        [
            v(7, "x", "a", "left"),  # A on the left, clicked left
            v(7, "y", "b", "left"),  # B clicked on the left: A was on the right
            v(7, "z", "tie", None),
            v(9, "x", "a", "right", models=("", "")),  # unknown models
            v(9, "y", "both_bad", None, models=("", "")),
            v(11, "z", "a", "left", is_gold=True),  # gold: left out
        ]
    )
    votes = CrowdVotes.of_columns(columns)
    assert votes.comparison_ids.tolist() == [7, 9]
    assert votes.comparison.tolist() == [0, 0, 0, 1, 1]
    assert [votes.annotators[j] for j in votes.annotator] == ["x", "y", "z", "x", "y"]
    assert votes.choice.tolist() == [LEFT, LEFT, TIE, RIGHT, BOTH_BAD]
    assert votes.a_left[:2].tolist() == [True, False]
    assert not votes.a_left[3]  # clicked A on the right
    assert votes.models == ["", "m1", "m2"]
    assert votes.model_a.tolist() == [1, 1, 1, UNKNOWN_MODEL, UNKNOWN_MODEL]
    assert votes.model_b.tolist() == [2, 2, 2, UNKNOWN_MODEL, UNKNOWN_MODEL]
    fit = fit_crowd(votes, truth="comparison")
    assert fit.compared.tolist() == [False, True, True]
    assert np.isnan(fit.strength[0]) and fit.strength[1] == pytest.approx(-fit.strength[2])
    np.testing.assert_allclose(fit.posterior.sum(axis=1), 1)
    with pytest.raises(ValueError, match="without its screen side"):
        CrowdVotes.of_columns(VoteColumns.of([v(1, "x", "a", None)]))


# -- planted annotators --------------------------------------------------------------------------

HONEST = 6
KINDS = ["honest"] * HONEST + ["random", "always_left", "left_biased"]
# Honest annotators follow the truth most of the time and otherwise answer at random; the
# random clicker never follows it; the left-biased one follows it half the time and, when
# unsure, clicks left 3 times in 4.
PLANTED_R = np.array([0.9, 0.85, 0.85, 0.8, 0.8, 0.75, 0.0, 0.0, 0.5])
PLANTED_B = np.array([0.5] * HONEST + [0.5, 1.0, 0.75])
PLANTED_N = np.array([0.3] * HONEST + [1 / 3, 0.0, 0.05])


def simulate(
    seed, *, comparisons=600, per=3, models=8, adaptive=False, r=PLANTED_R, b=PLANTED_B, n=PLANTED_N
):
    """Votes of the planted annotators, `per` distinct ones a comparison; with `adaptive`, the
    third vote only where the first two named different truths (uncertain_first's rule)."""
    rng = np.random.default_rng(seed)
    k = len(r)
    strength = np.linspace(-1.5, 1.5, models)
    model_a = rng.integers(0, models, comparisons)
    model_b = (model_a + rng.integers(1, models, comparisons)) % models
    half = (strength[model_a] - strength[model_b]) / 2
    chances = np.exp(np.stack([half, -half, np.full(comparisons, -1.0)], axis=1))
    chances /= chances.sum(axis=1, keepdims=True)
    truth = (rng.random((comparisons, 1)) > chances.cumsum(axis=1)).sum(axis=1)
    annotator = np.argsort(rng.random((comparisons, k)), axis=1)[:, :per].reshape(-1)
    comparison = np.repeat(np.arange(comparisons), per)
    a_left = rng.random(len(annotator)) < 0.5
    t = truth[comparison]
    truthful = np.where(t == T, TIE, np.where((t == A) == a_left, LEFT, RIGHT))
    side = np.where(rng.random(len(annotator)) < b[annotator], LEFT, RIGHT)
    random = np.where(rng.random(len(annotator)) < n[annotator], TIE, side)
    choice = np.where(rng.random(len(annotator)) < r[annotator], truthful, random)
    keep = np.ones(len(annotator), dtype=bool)
    if adaptive:
        named = np.where(choice == TIE, T, np.where((choice == LEFT) == a_left, A, B))
        named = named.reshape(comparisons, per)
        keep.reshape(comparisons, per)[:, 2:] = (named[:, 0] != named[:, 1])[:, None]
    votes = CrowdVotes(
        comparison=comparison[keep],
        annotator=annotator[keep],
        model_a=model_a[comparison[keep]],
        model_b=model_b[comparison[keep]],
        choice=choice[keep].astype(np.int8),
        a_left=a_left[keep],
        comparison_ids=np.arange(comparisons, dtype=np.int64),
        annotators=[f"{kind}-{j}" for j, kind in enumerate(KINDS)]
        if k == len(KINDS)
        else [f"a{j}" for j in range(k)],
        models=[f"m{i}" for i in range(models)],
    )
    return votes, strength - strength.mean(), truth


def as_columns(votes):
    """The votes as stats.VoteColumns (options oriented to the candidates, with the side)."""
    size = len(votes)
    choice = votes.choice.astype(np.int64)
    sided = choice < TIE
    option = np.where(sided, np.where((choice == LEFT) == votes.a_left, 0, 1), choice)
    zeros = np.zeros(size, dtype=np.int64)
    return VoteColumns(
        comparison=votes.comparison_ids[votes.comparison],
        annotator=votes.annotator.astype(np.int64),
        option=option.astype(np.int8),
        side=np.where(sided, choice + 1, 0).astype(np.int8),
        strength=zeros,
        has_strength=zeros.astype(bool),
        model_a=votes.model_a.astype(np.int64),
        model_b=votes.model_b.astype(np.int64),
        is_gold=zeros.astype(bool),
        gold_correct=np.full(size, -1, dtype=np.int8),
        duration_ms=zeros,
        has_duration=zeros.astype(bool),
        prompt=np.full(size, -1, dtype=np.int64),
        candidate_a=np.full(size, -1, dtype=np.int64),
        candidate_b=np.full(size, -1, dtype=np.int64),
        is_audit=zeros.astype(bool),
        names=votes.annotators,
        models=votes.models,
    )


def plain_bradley_terry(votes):
    """stats.bradley_terry on the same votes, its Elo scale back to natural logs."""
    columns = as_columns(votes)
    first = np.unique(columns.comparison, return_index=True)[1]
    tally = np.zeros((len(first), 3), dtype=np.int64)
    np.add.at(tally, (votes.comparison, np.minimum(columns.option, 2)), 1)
    battles = Battles(columns.model_a[first], columns.model_b[first], *tally.T, models=votes.models)
    scores = {row["model"]: row for row in bradley_terry(battles)["models"]}
    scale = math.log(10) / 400
    rows = [scores[model] for model in votes.models]
    point = np.array([(row["score"] - 1000) * scale for row in rows])
    interval = np.array([[(x - 1000) * scale for x in row["ci95"]] for row in rows])
    return point, interval


def coverage(interval, truth):
    return float(((interval[:, 0] <= truth) & (truth <= interval[:, 1])).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_annotators_are_recovered(seed):
    votes, strength, truth = simulate(seed, comparisons=1000)
    fit = fit_crowd(votes, truth="comparison")
    assert fit.converged
    honest = slice(0, HONEST)
    random, always_left, left_biased = HONEST, HONEST + 1, HONEST + 2
    r, r_ci, b, b_ci = fit.reliability, fit.reliability_ci95, fit.left_share, fit.left_share_ci95
    # Reliability: honest high, near the planted value and (but for one in six, at 95%) inside
    # their intervals; both spammers low, their intervals below every honest estimate.
    np.testing.assert_allclose(r[honest], PLANTED_R[honest], atol=0.12)
    assert (
        (r_ci[honest, 0] <= PLANTED_R[honest]) & (PLANTED_R[honest] <= r_ci[honest, 1])
    ).sum() >= 5
    assert r[random] < 0.1 and r[always_left] < 0.1
    assert max(r_ci[random, 1], r_ci[always_left, 1]) < r[honest].min()
    assert abs(r[left_biased] - 0.5) < 0.12
    # Position bias of the random answers: the always-left clicker near 1, the left-biased one
    # above 0.5 with an interval excluding it; the intervals of the honest and the random
    # clicker hold 0.5 (but for one in seven, at 95%).
    assert b[always_left] > 0.95 and b_ci[always_left, 0] > 0.8
    # Behind b: nearly all the always-left clicker's votes, few of an honest annotator's.
    votes_of_each = np.bincount(votes.annotator, minlength=len(KINDS))
    assert fit.random_side_votes[always_left] > 0.95 * votes_of_each[always_left]
    assert (fit.random_side_votes[honest] < 0.3 * votes_of_each[honest]).all()
    assert (fit.votes == votes_of_each).all()
    # Behind r: fewer votes than were cast (the truths are unknown), yet a good share of them.
    assert (fit.effective_votes <= fit.votes).all()
    assert (fit.effective_votes[honest] > 0.2 * fit.votes[honest]).all()
    assert b_ci[left_biased, 0] > 0.55
    unbiased = b_ci[[*range(HONEST), random]]
    assert ((unbiased[:, 0] <= 0.5) & (unbiased[:, 1] >= 0.5)).sum() >= HONEST
    # Strengths: ranked as planted, and the intervals cover the truth; the plain Bradley-Terry
    # over the same votes, spammers' coin flips and all, compresses the scale and misses it.
    assert kendalltau(fit.strength, strength).statistic >= 0.9
    crowd_coverage = coverage(fit.strength_ci95, strength)
    plain, plain_interval = plain_bradley_terry(votes)
    assert crowd_coverage >= 0.8
    assert coverage(plain_interval, strength) < crowd_coverage
    assert np.ptp(plain) < 0.7 * np.ptp(strength) < np.ptp(fit.strength)
    # The posteriors name the truth more often than the majority of the votes does.
    named = np.where(votes.choice >= TIE, T, np.where((votes.choice == LEFT) == votes.a_left, A, B))
    tally = np.zeros((len(truth), 3))
    np.add.at(tally, (votes.comparison, named), 1)
    assert (fit.posterior.argmax(axis=1) == truth).mean() > (tally.argmax(axis=1) == truth).mean()


def test_reliability_is_unbiased_under_adaptive_sampling():
    # uncertain_first's rule: a third vote only where the first two split. Every comparison
    # raw leave-one-out agreement can count is then a disagreement; the model's reliability
    # uses each vote's likelihood, which the rule does not change.
    votes, _, _ = simulate(4, comparisons=1200, adaptive=True)
    agree, counted = leave_one_out(as_columns(votes))
    assert (counted[:HONEST] > 20).all() and (agree[:HONEST] == 0).all()
    fit = fit_crowd(votes, truth="comparison")
    honest = fit.reliability[:HONEST]
    assert honest.min() > 0.65
    assert np.abs(honest - PLANTED_R[:HONEST]).mean() < 0.06
    assert (fit.reliability_ci95[:HONEST, 0] <= PLANTED_R[:HONEST]).sum() >= HONEST - 1
    assert fit.reliability[HONEST : HONEST + 2].max() < 0.1


def test_the_fit_is_quick_at_scale():
    # 50,000 votes, 30 annotators, 10 models: a fit, intervals included, well within a second
    # on a quiet machine; the bound here leaves room for a busy one.
    rng = np.random.default_rng(5)
    r = np.r_[rng.uniform(0.6, 0.95, 26), np.zeros(4)]
    b = np.r_[np.full(28, 0.5), 1.0, 0.75]
    n = np.r_[np.full(26, 0.3), 1 / 3, 0.2, 0.0, 0.05]
    votes, strength, _ = simulate(5, comparisons=16_667, models=10, r=r, b=b, n=n)
    assert len(votes) > 50_000 - 5
    started = time.perf_counter()
    fit = fit_crowd(votes, truth="comparison")
    assert time.perf_counter() - started < 5
    assert fit.converged
    assert kendalltau(fit.strength, strength).statistic == pytest.approx(1)
    assert fit.reliability[26:].max() < 0.05 < 0.55 < fit.reliability[:26].min()


def test_the_fit_is_deterministic():
    votes, _, _ = simulate(6)
    fit, again = fit_crowd(votes, truth="comparison"), fit_crowd(votes, truth="comparison")
    for field in ("reliability", "reliability_ci95", "left_share", "posterior", "strength_ci95"):
        np.testing.assert_array_equal(getattr(fit, field), getattr(again, field))
