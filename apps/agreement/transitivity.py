"""Transitivity checks: does an annotator's own judgment of one prompt's responses go round in
circles (A better than B, B than C, C than A)?

A comparison is between two candidates of one prompt, so a triad is three candidates of one
prompt all three of whose pairs the same annotator judged decisively (A or B better; ties and
both-bad votes say nothing about order); it needs prompts of three candidates or more. A triad
is a cycle when the three judgments go round; of the 8 ways to orient three pairs 2 are cycles,
so a random clicker's triads are cycles a quarter of the time, and honest judgments of near
equals now and then. A pair an annotator judged twice, both ways, is left out (no order).

The test (`transitivity_tests`): per annotator with at least MIN_TRIADS triads, a one-sided
Fisher exact test that their cycle rate is above that of the project's other annotators pooled
(the other annotators' judgments of near equals cycle too, so the reference is theirs, not
zero), Holm-corrected over the annotators at flags.CONFIDENCE. Each test reports the triads a
random clicker (a quarter of them cycles) would need to be flagged against the same others.
"""

import functools
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import hypergeom
from statsmodels.stats.multitest import multipletests

from apps.agreement.flags import CONFIDENCE

if TYPE_CHECKING:
    from apps.agreement.stats import VoteColumns

# The fewest triads an annotator's cycle rate is tested on.
MIN_TRIADS = 5
# A random clicker's cycle rate: 2 of the 8 orientations of three pairs go round.
RANDOM_CYCLE_RATE = 0.25
# The longest run of triads `random_clicker_min_triads` looks through, and how many in a row
# past its answer must be flagged too (the p-value wobbles as a quarter rounds up).
LONGEST = 10_000
MIN_RUN = 20
MEANING = (
    "triads: sets of three responses to one prompt whose three pairs the annotator judged "
    "decisively; cycles: triads judged round in a circle (A over B, B over C, C over A). "
    "Intransitive: a cycle rate above the other annotators' pooled one (one-sided Fisher exact "
    "test, at least {min_triads} triads, {confidence:.0%} confidence with Holm's correction "
    "over the annotators); a random clicker's triads are cycles a quarter of the time"
)


def triad_counts(votes: "VoteColumns") -> tuple[np.ndarray, np.ndarray]:
    """Per annotator (codes into `votes.names`): their triads and cycles, over their decisive
    votes on ordinary comparisons with a known prompt and candidates."""
    size = len(votes.names)
    triads, cycles = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    keep = (
        ~votes.is_gold
        & (votes.option < 2)
        & (votes.prompt >= 0)
        & (votes.candidate_a >= 0)
        & (votes.candidate_b >= 0)
        & (votes.candidate_a != votes.candidate_b)
    )
    if not keep.any():
        return triads, cycles
    annotator, prompt = votes.annotator[keep], votes.prompt[keep]
    # Only groups (annotator, prompt) with three decisive votes or more can hold a triad.
    group = np.unique(np.stack([annotator, prompt], axis=1), axis=0, return_inverse=True)[1]
    group = group.reshape(-1)
    rich = np.bincount(group)[group] >= 3
    winner = np.where(votes.option[keep] == 0, votes.candidate_a[keep], votes.candidate_b[keep])
    loser = np.where(votes.option[keep] == 0, votes.candidate_b[keep], votes.candidate_a[keep])
    edges: dict[tuple[int, int], dict[tuple[int, int], set[bool]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for j, p, w, lose in zip(
        annotator[rich].tolist(),
        prompt[rich].tolist(),
        winner[rich].tolist(),
        loser[rich].tolist(),
        strict=True,
    ):
        edges[(j, p)][(min(w, lose), max(w, lose))].add(w < lose)
    for (j, _), pairs in edges.items():
        # The pairs judged one way: True when the smaller id won.
        order = {pair: next(iter(ways)) for pair, ways in pairs.items() if len(ways) == 1}
        candidates = sorted({c for pair in order for c in pair})
        for x, y, z in itertools.combinations(candidates, 3):
            if (x, y) in order and (y, z) in order and (x, z) in order:
                triads[j] += 1
                # x < y < z: a cycle is x>y, y>z, z>x or the reverse.
                xy, yz, xz = order[(x, y)], order[(y, z)], order[(x, z)]
                cycles[j] += int(xy == yz != xz)
    return triads, cycles


def p_cycles_above_others(cycles: int, triads: int, other_cycles: int, other_triads: int) -> float:
    """One-sided Fisher exact test that one annotator's cycle rate is above the others': the
    chance of `cycles` or more among their `triads` drawn from all the triads."""
    total, cyclic = triads + other_triads, cycles + other_cycles
    return float(hypergeom.sf(cycles - 1, total, cyclic, triads))


@functools.lru_cache(maxsize=256)
def random_clicker_min_triads(other_cycles: int, other_triads: int, alpha: float) -> int | None:
    """How many triads a random clicker (a quarter of them cycles, rounded up) needs to be
    flagged against these others under `alpha`: the smallest n (at least MIN_TRIADS) from
    which on the next MIN_RUN are flagged too. None when no run of LONGEST triads does it."""

    def flagged(n: int) -> bool:
        cycles = math.ceil(RANDOM_CYCLE_RATE * n - 1e-9)
        return p_cycles_above_others(cycles, n, other_cycles, other_triads) < alpha

    if not flagged(LONGEST):
        return None
    low, high = MIN_TRIADS, LONGEST
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if flagged(middle) else (middle + 1, high)
    start, run = low, 0
    while run < MIN_RUN:
        if flagged(start + run):
            run += 1
        else:
            start, run = start + run + 1, 0
    return start


def transitivity_tests(
    triads: Sequence[int], cycles: Sequence[int], *, confidence: float = CONFIDENCE
) -> list[dict[str, Any] | None]:
    """Per annotator (None without a triad): their triads, cycles and cycle rate, and the test
    of it against the other annotators' pooled rate (None below MIN_TRIADS triads, or when the
    others have none), Holm-corrected over the tested annotators."""
    alpha = 1 - confidence
    all_triads, all_cycles = int(sum(triads)), int(sum(cycles))
    tested = [i for i, n in enumerate(triads) if n >= MIN_TRIADS and all_triads - n > 0]
    raw = [
        p_cycles_above_others(cycles[i], triads[i], all_cycles - cycles[i], all_triads - triads[i])
        for i in tested
    ]
    holm = multipletests(raw, method="holm")[1] if raw else []
    by_annotator = {i: (raw[k], float(holm[k])) for k, i in enumerate(tested)}
    out: list[dict[str, Any] | None] = []
    for i, n in enumerate(triads):
        if not n:
            out.append(None)
            continue
        others = (all_cycles - cycles[i], all_triads - n)
        entry: dict[str, Any] = {
            "triads": int(n),
            "cycles": int(cycles[i]),
            "cycle_rate": round(cycles[i] / n, 4),
            "others_cycle_rate": round(others[0] / others[1], 4) if others[1] else None,
            "min_triads": MIN_TRIADS,
            "test": None,
        }
        if i in by_annotator:
            p_value, p_holm = by_annotator[i]
            entry["test"] = {
                "confidence": confidence,
                "correction": f"Holm over {len(raw)} tests",
                "p_value": float(f"{p_value:.4g}"),
                "p_holm": float(f"{p_holm:.4g}"),
                "flagged": bool(p_holm < alpha),
                "random_clicker_min_triads": random_clicker_min_triads(*others, alpha / len(raw)),
            }
        out.append(entry)
    return out


def transitivity(votes: "VoteColumns") -> dict[str, dict[str, Any] | None]:
    """Pseudonym -> the annotator's transitivity entry (`transitivity_tests`), or None."""
    triads, cycles = triad_counts(votes)
    tests = transitivity_tests([int(n) for n in triads], [int(k) for k in cycles])
    return dict(zip(votes.names, tests, strict=True))
