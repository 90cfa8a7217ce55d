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
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

# scipy and statsmodels are imported in the functions that use them, not here: with pandas and
# pyarrow, which statsmodels loads, they are about 150 MiB of a process's memory, and every
# process imports this module as Django starts (the admin's autodiscovery), an import or a web
# worker too, while only the statistics use them (tests/annotate/test_startup_memory.py).
from apps.agreement.flags import CONFIDENCE, first_flagged_run, tests_against_others

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
    first, second = votes.candidate_a[keep], votes.candidate_b[keep]
    low, high = np.minimum(first, second), np.maximum(first, second)
    low_won = np.where(votes.option[keep] == 0, first, second) == low
    # Candidates numbered 0, 1, ... within their prompt, in id order (small keys below).
    rank = _rank_in_prompt(np.concatenate([prompt, prompt]), np.concatenate([low, high]))
    width = int(rank.max()) + 1
    low_rank, high_rank = rank[: len(low)], rank[len(low) :]
    # Groups: (annotator, prompt).
    groups, group = np.unique(annotator * (int(prompt.max()) + 1) + prompt, return_inverse=True)
    group = group.reshape(-1)
    group_annotator = groups // (int(prompt.max()) + 1)
    # Edges: one per (group, pair), kept when every vote on it went the same way.
    edge_key = (group * width + low_rank) * width + high_rank
    keys, edge = np.unique(edge_key, return_inverse=True)
    edge = edge.reshape(-1)
    won = np.bincount(edge, low_won.astype(np.int64), len(keys))
    judged = np.bincount(edge, minlength=len(keys))
    one_way = (won == 0) | (won == judged)
    keys, smaller_won = keys[one_way], (won > 0)[one_way]
    # Paths x < y < z: an edge (x, y) and an edge (y, z) of the same group, then (x, z).
    square = width * width
    edge_group, x, y = keys // square, keys // width % width, keys % width
    begin = np.searchsorted(keys, (edge_group * width + y) * width)
    stop = np.searchsorted(keys, (edge_group * width + y + 1) * width)
    count = stop - begin
    first_edge = np.repeat(np.arange(len(keys)), count)
    offset = np.arange(len(first_edge)) - np.repeat(np.cumsum(count) - count, count)
    second_edge = begin[first_edge] + offset
    z = keys[second_edge] % width
    closing = (edge_group[first_edge] * width + x[first_edge]) * width + z
    where = np.minimum(np.searchsorted(keys, closing), max(len(keys) - 1, 0))
    found = keys[where] == closing if len(keys) else np.zeros(0, dtype=bool)
    xy, yz, xz = smaller_won[first_edge], smaller_won[second_edge], smaller_won[where]
    # A cycle is x>y, y>z, z>x or the reverse: the first two agree and the third does not.
    cyclic = found & (xy == yz) & (xy != xz)
    owner = group_annotator[edge_group[first_edge]]
    triads += np.bincount(owner[found], minlength=size)
    cycles += np.bincount(owner[cyclic], minlength=size)
    return triads, cycles


def _rank_in_prompt(prompt: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Each candidate's rank (0, 1, ...) among the distinct candidates of its prompt seen here,
    in id order."""
    order = np.lexsort((candidate, prompt))
    p, c = prompt[order], candidate[order]
    new = np.r_[True, (p[1:] != p[:-1]) | (c[1:] != c[:-1])]
    distinct = np.cumsum(new) - 1
    distinct_prompt = p[new]
    starts = np.r_[True, distinct_prompt[1:] != distinct_prompt[:-1]]
    start = np.maximum.accumulate(np.where(starts, np.arange(len(distinct_prompt)), 0))
    ranks = np.arange(len(distinct_prompt)) - start
    out = np.empty(len(prompt), dtype=np.int64)
    out[order] = ranks[distinct]
    return out


def p_cycles_above_others(cycles: int, triads: int, other_cycles: int, other_triads: int) -> float:
    """One-sided Fisher exact test that one annotator's cycle rate is above the others': the
    chance of `cycles` or more among their `triads` drawn from all the triads."""
    total, cyclic = triads + other_triads, cycles + other_cycles
    from scipy.stats import hypergeom

    return float(hypergeom.sf(cycles - 1, total, cyclic, triads))


@functools.lru_cache(maxsize=256)
def random_clicker_min_triads(other_cycles: int, other_triads: int, alpha: float) -> int | None:
    """How many triads a random clicker (a quarter of them cycles, rounded up) needs to be
    flagged against these others under `alpha`: the smallest n (at least MIN_TRIADS) from
    which on the next MIN_RUN are flagged too. None when no run of LONGEST triads does it."""

    def flagged(n: int) -> bool:
        cycles = math.ceil(RANDOM_CYCLE_RATE * n - 1e-9)
        return p_cycles_above_others(cycles, n, other_cycles, other_triads) < alpha

    return first_flagged_run(flagged, first=MIN_TRIADS, longest=LONGEST, run=MIN_RUN)


def transitivity_tests(
    triads: Sequence[int], cycles: Sequence[int], *, confidence: float = CONFIDENCE
) -> list[dict[str, Any] | None]:
    """Per annotator (None without a triad): their triads, cycles and cycle rate, and the test
    of it against the other annotators' pooled rate (None below MIN_TRIADS triads, or when the
    others have none), Holm-corrected over the tested annotators."""
    alpha = 1 - confidence
    results = tests_against_others(
        triads, cycles, minimum=MIN_TRIADS, p_value=p_cycles_above_others, confidence=confidence
    )
    all_triads, all_cycles = int(sum(triads)), int(sum(cycles))
    out: list[dict[str, Any] | None] = []
    for i, n in enumerate(triads):
        if not n:
            out.append(None)
            continue
        others = (all_cycles - cycles[i], all_triads - n)
        needed = (
            random_clicker_min_triads(*others, alpha / results.tested)
            if i in results.by_annotator
            else None
        )
        out.append(
            {
                "triads": int(n),
                "cycles": int(cycles[i]),
                "cycle_rate": round(cycles[i] / n, 4),
                "others_cycle_rate": round(others[0] / others[1], 4) if others[1] else None,
                "min_triads": MIN_TRIADS,
                "test": results.entry(i, random_clicker_min_triads=needed),
            }
        )
    return out


def transitivity(votes: "VoteColumns") -> dict[str, dict[str, Any] | None]:
    """Pseudonym -> the annotator's transitivity entry (`transitivity_tests`), or None."""
    triads, cycles = triad_counts(votes)
    tests = transitivity_tests([int(n) for n in triads], [int(k) for k in cycles])
    return dict(zip(votes.names, tests, strict=True))
