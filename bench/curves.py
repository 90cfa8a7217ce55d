"""Tau curves of two policies compared: how many judgments one needs to reach the other's tau.

The standard library only, so that bench/policy_sim.py (which runs without the app) and
bench/quality.py share it. Both can write each seed's curves to a file (`--curves-out`); run
as a script, this reads such files (several runs' seeds together) and prints the saving over
all their seeds with a bootstrap interval over the seeds, which says how far a figure from so
many seeds can be trusted:

    .venv/bin/python bench/curves.py runs-1-20.json runs-21-40.json
    .venv/bin/python bench/curves.py sim.json --policy "uncertain_first, z steps" --groups 20
"""

import argparse
import json
import random
import statistics
from collections.abc import Sequence
from pathlib import Path


def reached_at(curve: dict[int, float], tau: float) -> float | None:
    """Where a mean tau curve (judgments -> tau, at checkpoints) first reaches `tau`, read off
    the straight line between the checkpoint before and the first one at or above it (from
    0 judgments and tau 0, where no vote orders anything, before the first checkpoint). Taking
    the checkpoint itself would count in whole steps between checkpoints: a quarter of the
    judgments at once where they are 150 apart at 600. None where the curve never reaches it."""
    before_n, before_tau = 0, 0.0
    for n, value in sorted(curve.items()):
        if value >= tau - 1e-9:
            if value <= before_tau:
                return float(n)
            return before_n + (n - before_n) * max(tau - before_tau, 0.0) / (value - before_tau)
        before_n, before_tau = n, value
    return None


def tau_reach(
    reference: dict[int, float], curve: dict[int, float]
) -> list[tuple[int, float, float | None]]:
    """For each checkpoint n of a reference policy's mean tau curve, below its best (where the
    curve has saturated, every policy reaches it at the end): (n, its tau, where `curve` first
    reaches that tau (reached_at), None if it never does)."""
    best = max(reference.values())
    return [
        (n, tau, reached_at(curve, tau))
        for n, tau in sorted(reference.items())
        if tau < best - 1e-9
    ]


def reach_line(reached: list[tuple[int, float, float | None]]) -> str:
    """tau_reach's pairs as "n->m (m/n - 1, so -25% is a quarter fewer judgments)", and the
    median saving over them (a checkpoint not reached counts as no saving)."""
    if not reached:
        return "no checkpoint below the reference's best"
    parts = [
        f"{n}->{round(m) if m is not None else '-'}" + (f" ({m / n - 1:+.0%})" if m else "")
        for n, _, m in reached
    ]
    return f"{', '.join(parts)}; median saving {median_saving(reached):.0%}"


def median_saving(reached: list[tuple[int, float, float | None]]) -> float:
    """The median of 1 - m/n over tau_reach's pairs (not reached: no saving)."""
    saved = sorted((1 - m / n) if m else 0.0 for n, _, m in reached)
    middle = len(saved) // 2
    return saved[middle] if len(saved) % 2 else (saved[middle - 1] + saved[middle]) / 2


Curve = dict[int, float]


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """Seeds' tau curves averaged, at the checkpoints every seed has, and at the last one at the
    smallest final count (a policy that stops early may end a few judgments short: each seed's
    own last tau there)."""
    last = min(max(c) for c in curves)
    points = sorted(set.intersection(*(set(c) for c in curves)) | {last})
    return {n: statistics.fmean(c[n] if n in c else c[max(c)] for c in curves) for n in points}


def saving(reference: Sequence[Curve], curves: Sequence[Curve]) -> float:
    """median_saving of the mean curves of a set of seeds."""
    return median_saving(tau_reach(mean_curve(reference), mean_curve(curves)))


def write_curves(path: str, bench: str, setup: dict, curves: dict[str, dict[int, Curve]]) -> None:
    """Each seed's curves, `curves`: name (a policy, or a policy and a board) -> seed -> curve."""
    body = {
        "bench": bench,
        "setup": setup,
        "curves": {
            name: {str(seed): {str(n): tau for n, tau in c.items()} for seed, c in seeds.items()}
            for name, seeds in curves.items()
        },
    }
    Path(path).write_text(json.dumps(body, indent=1) + "\n")


def read_curves(paths: Sequence[str]) -> dict[str, dict[int, Curve]]:
    """write_curves's files merged: name -> seed -> curve. A seed in two files must be the
    same setup's (the files' setups must match) and is an error: it would count twice."""
    merged: dict[str, dict[int, Curve]] = {}
    setup = None
    for path in paths:
        body = json.loads(Path(path).read_text())
        if setup is not None and body["setup"] != setup:
            raise SystemExit(f"{path}: another setup than the first file's: {body['setup']}")
        setup = body["setup"]
        for name, seeds in body["curves"].items():
            into = merged.setdefault(name, {})
            for seed, c in seeds.items():
                if int(seed) in into:
                    raise SystemExit(f"{path}: seed {seed} of {name!r} is in an earlier file")
                into[int(seed)] = {int(n): tau for n, tau in c.items()}
    return merged


def bootstrap(
    reference: dict[int, Curve], curves: dict[int, Curve], resamples: int, rng: random.Random
) -> list[float]:
    """The saving of `resamples` resamples of the seeds (with replacement, the same seeds for
    both policies: a seed is one import file, judged under each)."""
    seeds = sorted(set(reference) & set(curves))
    out = []
    for _ in range(resamples):
        drawn = [rng.choice(seeds) for _ in seeds]
        out.append(saving([reference[s] for s in drawn], [curves[s] for s in drawn]))
    return sorted(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The saving over the seeds of --curves-out files")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--reference", default="random", help="the curves' name to reach")
    parser.add_argument("--policy", default=None, help="the other (default: every other name)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--groups",
        type=int,
        default=0,
        help="also the saving of consecutive groups of so many seeds",
    )
    parser.add_argument("--target", type=float, default=0.25)
    args = parser.parse_args(argv)
    merged = read_curves(args.files)
    rng = random.Random(0)
    for name, curves in merged.items():
        board = name.split(" / ", 1)
        reference_name = " / ".join([args.reference, *board[1:]])
        if name == reference_name or (args.policy and board[0] != args.policy):
            continue
        if reference_name not in merged:
            continue
        reference = merged[reference_name]
        seeds = sorted(set(reference) & set(curves))
        if not seeds:
            continue
        mean = mean_curve([curves[s] for s in seeds])
        reached = tau_reach(mean_curve([reference[s] for s in seeds]), mean)
        resampled = bootstrap(reference, curves, args.resamples, rng)
        low, high = (resampled[int(q * (len(resampled) - 1))] for q in (0.025, 0.975))
        above = sum(s >= args.target for s in resampled) / len(resampled)
        print(f"{name} against {reference_name}, {len(seeds)} seeds ({seeds[0]}-{seeds[-1]}):")
        print(f"  {reach_line(reached)}")
        print(
            f"  bootstrap over the seeds ({args.resamples}): 95% interval {low:.0%} to {high:.0%}; "
            f"at or above {args.target:.0%} in {above:.0%} of resamples"
        )
        if args.groups:
            groups = [seeds[i : i + args.groups] for i in range(0, len(seeds), args.groups)]
            shown = [
                f"{g[0]}-{g[-1]} {saving([reference[s] for s in g], [curves[s] for s in g]):.0%}"
                for g in groups
                if len(g) == args.groups
            ]
            print(f"  groups of {args.groups} seeds: {', '.join(shown)}")


if __name__ == "__main__":
    main()
