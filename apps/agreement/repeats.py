"""Repeat consistency: does an annotator give the same answer to a comparison shown to them again,
sides swapped (a consistency probe, apps.judging.probes)?

Per annotator: the probes they answered, and how many matched their first answer (oriented to
the candidates, so a left/right habit does not count as consistency). People are not perfectly
consistent on near-equal responses, so the reference is the other annotators' pooled
consistency, not 1.

The test (`repeat_tests`): per annotator with at least MIN_PROBES answered probes, a one-sided
Fisher exact test that their consistency is below the other annotators' pooled one,
Holm-corrected over the tested annotators at flags.CONFIDENCE. Each test reports the probes a
uniform random clicker (consistent by chance only: the sum of the squares of its chances of
each button) would need to be flagged against the same others.
"""

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from apps.agreement.flags import (
    CONFIDENCE,
    first_flagged_run,
    p_below_other,
    tests_against_others,
    wilson_interval,
)

# The fewest answered probes an annotator's consistency is tested on.
MIN_PROBES = 5
# The longest run of probes `random_clicker_min_probes` looks through.
LONGEST = 10_000
MEANING = (
    "probes: comparisons shown to the annotator again, sides swapped, at least a set number of "
    "their judgments later; consistent: the same answer both times (oriented to the responses). "
    "Inconsistent repeats: a consistency below the other annotators' pooled one (one-sided "
    "Fisher exact test, at least {min_probes} probes, {confidence:.0%} confidence with Holm's "
    "correction over the annotators); never votes, so no other figure counts them"
)


def clicker_consistency(clicker: Sequence[float]) -> float:
    """How often a uniform random clicker answers a repeat as it answered the first time: the
    chance of pressing the same button twice (flags.Design.clicker's chances)."""
    return float(sum(p * p for p in clicker))


@functools.lru_cache(maxsize=256)
def random_clicker_min_probes(
    chance: float, other_consistent: int, other_answered: int, alpha: float
) -> int | None:
    """How many probes a random clicker (consistent at `chance`, rounded up) needs to be flagged
    against these others under `alpha`: the smallest n (at least MIN_PROBES) from which on the
    next runs are flagged too. None when no run of LONGEST probes does it."""

    def flagged(n: int) -> bool:
        consistent = math.ceil(chance * n - 1e-9)
        return p_below_other(consistent, n, other_consistent, other_answered) < alpha

    return first_flagged_run(flagged, first=MIN_PROBES, longest=LONGEST)


def repeat_tests(
    answered: Sequence[int],
    consistent: Sequence[int],
    *,
    chance: float,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any] | None]:
    """Per annotator (None without an answered probe): their probes, consistent ones, share
    with its 95% Wilson interval, and the test against the others' pooled consistency (None
    below MIN_PROBES, or when the others answered none), Holm-corrected over the tested."""
    alpha = 1 - confidence
    results = tests_against_others(
        answered, consistent, minimum=MIN_PROBES, p_value=p_below_other, confidence=confidence
    )
    all_answered, all_consistent = int(sum(answered)), int(sum(consistent))
    out: list[dict[str, Any] | None] = []
    for i, n in enumerate(answered):
        if not n:
            out.append(None)
            continue
        others = (all_consistent - consistent[i], all_answered - n)
        needed = (
            None
            if i not in results.by_annotator or chance >= others[0] / others[1]
            else random_clicker_min_probes(chance, *others, alpha / results.tested)
        )
        out.append(
            {
                "probes": int(n),
                "consistent": int(consistent[i]),
                "consistency": round(consistent[i] / n, 4),
                "ci95": wilson_interval(int(consistent[i]), int(n)),
                "others_consistency": round(others[0] / others[1], 4) if others[1] else None,
                "min_probes": MIN_PROBES,
                "test": results.entry(i, random_clicker_min_probes=needed),
            }
        )
    return out


def repeat_consistency(
    names: Sequence[str], counts: Mapping[str, tuple[int, int]], *, chance: float
) -> dict[str, dict[str, Any] | None]:
    """Pseudonym -> the annotator's repeat entry (`repeat_tests`), or None, for each of `names`
    and anyone else in `counts` ((answered, consistent) by pseudonym)."""
    everyone = [*names, *(name for name in counts if name not in set(names))]
    answered = [counts.get(name, (0, 0))[0] for name in everyone]
    consistent = [counts.get(name, (0, 0))[1] for name in everyone]
    tests = repeat_tests(answered, consistent, chance=chance)
    return dict(zip(everyone, tests, strict=True))
