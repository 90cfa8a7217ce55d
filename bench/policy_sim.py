"""A model of the queue's policies, outside the app: how soon does each one's leaderboard order
the models? bench/quality.py answers through the app, but at a few seeds its tau curves are
mostly noise (a seed's tau moves by 0.07 with one swapped pair); this plays the same game in
plain Python at 30 seeds in one to ten minutes. And many seeds are needed: over 2,000 seeds the
saving of the app's order is 16% (95% interval 13-21%), while groups of 100 seeds range over
6-32% (bench/README.md).

    .venv/bin/python bench/policy_sim.py                    # spread 3.0 and 1.5, 30 seeds
    .venv/bin/python bench/policy_sim.py --spreads 3 --seeds 10
    .venv/bin/python bench/policy_sim.py --comparisons 6000 --only "uncertain_first, z steps"
    .venv/bin/python bench/policy_sim.py --spreads 3 --seeds 800 --first-seed 201 \
        --only "uncertain_first, z steps" --curves-out sim-201.json   # for bench/curves.py

The game, as in bench/quality.py's defaults: 8 models with log-strengths spread evenly over
`--spread` units; 1,200 comparisons (`--comparisons`), each a random pair of them; overlap 3;
9 annotators in turn (6 honest by the Bradley-Terry model, ties one time in three between
neighbours, a random clicker, an always-left one, a left-biased one), sides drawn at random; a
budget of 3,000 judgments. A 10% audit sample (`--audit-rate`). With `--gold-rate` a turn is a
gold item (a generated honeypot, bench/quality.py's) with that chance: a judgment of the budget
but no vote, answered right with chance 0.982 by the honest and left-biased annotators and 0.5
by the other two; the gold rule pauses whoever is below 80% right after 20 answers or more.
Policies:

- random: the first open comparison the annotator has not judged in a fixed random order (the
  app's rank), so comparisons fill in turn;
- uncertain_first as before pair doubt (audit first, then most split, then fewest votes), with
  adaptive stopping at a lead of 2;
- uncertain_first with the doubt in three bands (undecided z < 1.645, decided z < 3, settled),
  refreshed every 100 judgments from a Bradley-Terry fit and its Fisher-information errors;
- uncertain_first with the doubt in half steps of z (what apps/agreement/pair_doubt.py writes);
- the same with the audit sample paced (an audit row with the audit rate as chance, in rank
  order) where the app serves it first;
- the same with the doubt fitted on the honest annotators' votes alone: what a perfectly
  reliability-weighted board would give (the app takes its doubt from its weighted board);
- an oracle, a reference no queue can be: it knows the true strengths, and sends each vote to
  the model pair where one more vote most lowers the expected number of misordered pairs (the
  Fisher information of the votes each pair has had, at the true win chances), re-ranked every
  10 judgments; the audit sample first, as the app serves it, in the same pair order; adaptive
  stopping as uncertain_first's. A reference, not a bound: it weighs a vote by its information
  at the truth alone, blind to ties and to the spammers' votes, and the z steps, which see
  only the votes, do as well (bench/README.md).

It prints per spread and policy the mean over seeds of the plain Bradley-Terry leaderboard's
Kendall tau (every vote alike, ties half a win each) every 150 judgments, its mean over the
whole run, the judgments at which the mean first reaches the random policy's final tau, and
where it first reaches random's tau after n judgments for each checkpoint n (bench/curves.py, read
between checkpoints).
It models the queue, not the app: no leases, no concurrency, a plain fit where the app's doubt
comes from its reliability-weighted one.
"""

import argparse
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from curves import reach_line, tau_reach, write_curves

MODELS = 8
OVERLAP = 3
AUDIT = 0.1  # the audit sample's share of the comparisons (--audit-rate)
KINDS = ("honest",) * 6 + ("random", "always_left", "left_biased")
ORACLE_EVERY = 10  # judgments between the oracle's re-rankings
# Gold items (--gold-rate): the chance of a right answer by kind (bench/quality.py's honeypots,
# a degraded side DEGRADED = 4 log-strength units down), and the gold rule's bar.
GOLD_RIGHT = {"honest": 1 / (1 + math.exp(-4.0)), "left_biased": 1 / (1 + math.exp(-4.0))}
GOLD_MIN_ACCURACY, GOLD_MIN_ANSWERS = 0.8, 20  # bench/quality.py's defaults
_PHI = NormalDist().cdf


@dataclass
class Comparison:
    a: int
    b: int
    rank: float
    audit: bool
    votes_a: int = 0
    votes_b: int = 0
    votes: int = 0
    doubt: int = 0
    complete: bool = False
    by: set[int] = field(default_factory=set)

    def split(self) -> int:
        return abs(self.votes_a - self.votes_b) if self.votes else 1


def fit(wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry log-strengths (MM iterations, 0.1 of a win's prior on every pair) and their
    covariance from the Fisher information."""
    w = wins + 0.1 * (1 - np.eye(MODELS))
    n = w + w.T
    p = np.ones(MODELS)
    for _ in range(500):
        new = w.sum(1) / (n / (p[:, None] + p[None, :])).sum(1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(new - p)) < 1e-9
        p = new
        if done:
            break
    s = np.log(p)
    win = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
    info = -(n * win * win.T)
    np.fill_diagonal(info, 0)
    info[np.diag_indices(MODELS)] = -info.sum(1)
    return s, np.linalg.pinv(info)


def kendall_tau(first: np.ndarray, second: np.ndarray) -> float:
    score = 0
    for i in range(MODELS):
        for j in range(i + 1, MODELS):
            score += int(np.sign((first[i] - first[j]) * (second[i] - second[j])))
    return score / (MODELS * (MODELS - 1) / 2)


def oracle_order(true: np.ndarray, votes: np.ndarray) -> list[tuple[int, int]]:
    """Model pairs (i < j), the one where one more vote most lowers the expected number of
    misordered pairs first, at the true strengths: each pair's difference is normal with the
    variance the votes so far give (the inverse of their Fisher information, a weak prior on
    each model), and a pair is misordered with chance Phi(-|difference| / its error)."""
    p = 1 / (1 + np.exp(-(true[:, None] - true[None, :])))
    weight = p * p.T  # a vote's information on its pair's difference
    pairs = [(i, j) for i in range(MODELS) for j in range(i + 1, MODELS)]

    def misordered(info: np.ndarray) -> float:
        cov = np.linalg.inv(info)
        return sum(
            _PHI(-abs(true[i] - true[j]) / math.sqrt(cov[i, i] + cov[j, j] - 2 * cov[i, j]))
            for i, j in pairs
        )

    info = -(votes + votes.T) * weight
    np.fill_diagonal(info, 0)
    info[np.diag_indices(MODELS)] = -info.sum(1)
    info += 1e-3 * np.eye(MODELS)
    after = {}
    for i, j in pairs:
        step = np.zeros(MODELS)
        step[i], step[j] = 1, -1
        after[i, j] = misordered(info + weight[i, j] * np.outer(step, step))
    return sorted(pairs, key=after.__getitem__)


def bands(z: float) -> int:
    return 0 if z < 1.645 else 1 if z < 3.0 else 2


def steps(z: float) -> int:
    return min(int(z / 0.5), 8)


def gold_paused(answered: int, right: int) -> bool:
    """The gold rule (a membership's blocked_reason): paused below GOLD_MIN_ACCURACY right
    after GOLD_MIN_ANSWERS answers or more."""
    return answered >= GOLD_MIN_ANSWERS and right < GOLD_MIN_ACCURACY * answered


def play(
    seed: int,
    spread: float,
    policy: str,
    budget: int,
    level: Callable[[float], int] | None,
    pool: int = 1200,
    audit: float = AUDIT,
    stop_lead: int = 2,
    refresh: int = 100,
    gold: float = 0.0,
):
    """One run; returns {judgments: tau} every 150 judgments."""
    rng = random.Random(seed)
    true = np.array([spread * (i / (MODELS - 1) - 0.5) for i in range(MODELS)])
    comparisons = [
        Comparison(*rng.sample(range(MODELS), 2), rank=rng.random(), audit=rng.random() < audit)
        for _ in range(pool)
    ]
    draw = random.Random(seed * 7 + (policy != "random"))
    wins = np.zeros((MODELS, MODELS))
    honest_wins = np.zeros((MODELS, MODELS))  # the honest annotators' votes alone
    curve: dict[int, float] = {}
    pair_votes = np.zeros((MODELS, MODELS))  # votes each model pair has had, [low, high]
    order: dict[tuple[int, int], int] = {}  # the oracle's, pair -> place
    judged = 0
    # Gold draws from their own generator, so that without gold a run is the same as before.
    gold_draw = random.Random(seed * 11 + 3)
    gold_answers = [[0, 0] for _ in KINDS]  # [answered, right] per annotator

    def judgment_done() -> None:
        """After each judgment (gold or not): the curve's point, the doubt's refresh."""
        if judged % 150 == 0:
            curve[judged] = kendall_tau(fit(wins)[0], true)
        if level is not None and judged % refresh == 0:
            s, cov = fit(honest_wins if policy.endswith("honest doubt") else wins)
            for c2 in comparisons:
                i, j = c2.a, c2.b
                z = abs(s[i] - s[j]) / math.sqrt(max(cov[i, i] + cov[j, j], 1e-12))
                c2.doubt = level(z)

    while judged < budget:
        moved = False
        for who, kind in enumerate(KINDS):
            if judged >= budget:
                break
            if gold_paused(*gold_answers[who]):
                continue
            if gold and gold_draw.random() < gold:
                gold_answers[who][0] += 1
                gold_answers[who][1] += gold_draw.random() < GOLD_RIGHT.get(kind, 0.5)
                moved = True
                judged += 1
                judgment_done()
                continue
            free = [c for c in comparisons if not c.complete and who not in c.by]
            if not free:
                continue
            moved = True
            if policy == "random":  # the app's: a fixed random order, each filled in turn
                c = min(free, key=lambda c: c.rank)
            elif policy == "uncertain_first, audit paced":
                # The audit sample takes its share of the judgments (an audit row with chance
                # AUDIT, in rank order), not the head of the queue.
                audits = [c for c in free if c.audit]
                rest = [c for c in free if not c.audit]
                if audits and (not rest or draw.random() < audit):
                    c = min(audits, key=lambda c: c.rank)
                else:
                    c = min(rest, key=lambda c: (c.doubt, c.split(), c.votes, c.rank))
            elif policy == "oracle":
                if judged % ORACLE_EVERY == 0 or not order:
                    order = {pair: k for k, pair in enumerate(oracle_order(true, pair_votes))}
                c = min(
                    free,
                    key=lambda c: (not c.audit, order[min(c.a, c.b), max(c.a, c.b)], c.rank),
                )
            else:
                c = min(free, key=lambda c: (not c.audit, c.doubt, c.split(), c.votes, c.rank))
            left, right = (c.a, c.b) if draw.random() < 0.5 else (c.b, c.a)
            d = true[left] - true[right]
            if kind == "random":
                answer = draw.choice("LR")
            elif kind == "always_left":
                answer = "L"
            elif kind == "left_biased" and abs(d) < 1.0:
                answer = "L" if draw.random() < 0.75 else "R"
            elif abs(d) < 0.5 and draw.random() < 1 / 3:
                answer = "T"
            else:
                answer = "L" if draw.random() < 1 / (1 + math.exp(-d)) else "R"
            counted = (wins, honest_wins) if kind == "honest" else (wins,)
            if answer == "T":
                for into in counted:
                    into[left, right] += 0.5
                    into[right, left] += 0.5
            else:
                winner, loser = (left, right) if answer == "L" else (right, left)
                for into in counted:
                    into[winner, loser] += 1
                if winner == c.a:
                    c.votes_a += 1
                else:
                    c.votes_b += 1
            c.votes += 1
            pair_votes[min(c.a, c.b), max(c.a, c.b)] += 1
            c.by.add(who)
            stopped = (
                policy != "random"
                and stop_lead > 0
                and not c.audit
                and abs(c.votes_a - c.votes_b) >= stop_lead
            )
            c.complete = c.votes >= OVERLAP or stopped
            judged += 1
            judgment_done()
        if not moved:
            break
    return curve


POLICIES: dict[str, tuple[str, Callable[[float], int] | None]] = {
    "random": ("random", None),
    "uncertain_first, no doubt": ("uncertain_first", None),
    "uncertain_first, 3 bands": ("uncertain_first", bands),
    "uncertain_first, z steps": ("uncertain_first", steps),
    "uncertain_first, z steps, audit paced": ("uncertain_first, audit paced", steps),
    "uncertain_first, z steps, doubt from honest votes": ("uncertain_first, honest doubt", steps),
    "oracle (knows the truth)": ("oracle", None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spreads", type=float, nargs="+", default=[3.0, 1.5])
    parser.add_argument("--seeds", type=int, default=30, help="how many seeds")
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seeds from this one on (default 1)"
    )
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--comparisons", type=int, default=1200, help="the pool")
    parser.add_argument(
        "--audit-rate", type=float, default=AUDIT, help="the audit sample's share of the pool"
    )
    parser.add_argument(
        "--stop-lead",
        type=int,
        default=2,
        help="adaptive stopping of every policy but random at this lead (0: off; default 2, "
        "what bench/quality.py's --stop-confidence 0.9 gives at overlap 3)",
    )
    parser.add_argument(
        "--refresh-every",
        type=int,
        default=100,
        help="judgments between the doubt's refreshes (bench/quality.py's --refresh-every)",
    )
    parser.add_argument(
        "--gold-rate",
        type=float,
        default=0.0,
        help="the share of turns that are gold items under the gold rule (default 0, none)",
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="these policies (names as printed) and random"
    )
    parser.add_argument(
        "--curves-out",
        default=None,
        help="write each seed's tau curves to this JSON file (one spread only), for "
        "bench/curves.py",
    )
    args = parser.parse_args()
    if args.curves_out and len(args.spreads) != 1:
        parser.error("--curves-out takes one spread")
    started = time.perf_counter()
    written: dict[str, dict[int, dict[int, float]]] = {}
    for spread in args.spreads:
        print(
            f"\nspread {spread}, {args.seeds} seeds from {args.first_seed}, {args.budget} "
            f"judgments, {args.comparisons} comparisons, audit rate {args.audit_rate}, stopping "
            f"at a lead of {args.stop_lead or '- (off)'}, refresh every {args.refresh_every}"
            + (f", gold rate {args.gold_rate}" if args.gold_rate else "")
        )
        final = None
        reference: dict[int, float] = {}
        for name, (policy, level) in POLICIES.items():
            if args.only and name != "random" and name not in args.only:
                continue
            curves = [
                play(
                    seed,
                    spread,
                    policy,
                    args.budget,
                    level,
                    args.comparisons,
                    args.audit_rate,
                    args.stop_lead,
                    args.refresh_every,
                    args.gold_rate,
                )
                for seed in range(args.first_seed, args.first_seed + args.seeds)
            ]
            written[name] = dict(enumerate(curves, start=args.first_seed))
            points = sorted(set.intersection(*(set(c) for c in curves)))
            mean = {n: float(np.mean([c[n] for c in curves])) for n in points}
            if final is None:
                final, reference = mean[points[-1]], mean
            reach = next((n for n in points if mean[n] >= final - 1e-9), None)
            shown = " ".join(f"{n}:{mean[n]:.3f}" for n in points[1::2])
            print(
                f"  {name:<26} mean tau {np.mean(list(mean.values())):.4f}, reaches random's "
                f"final {final:.3f} at {reach or '-'}; {shown}"
            )
            if name != "random":
                print(
                    f"    random's tau after n reached at: {reach_line(tau_reach(reference, mean))}"
                )
    if args.curves_out:
        setup = {
            "spread": args.spreads[0],
            "budget": args.budget,
            "comparisons": args.comparisons,
            "audit_rate": args.audit_rate,
            "stop_lead": args.stop_lead,
            "refresh_every": args.refresh_every,
        } | ({"gold_rate": args.gold_rate} if args.gold_rate else {})
        write_curves(args.curves_out, "policy_sim", setup, written)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
