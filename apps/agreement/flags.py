"""When an annotator's votes are evidence against them: the statistical tests behind the flags.

Pure functions over counts, so that each can be checked by hand; `stats.annotator_summaries`
runs them and the dashboard's flags read their results.

- Low agreement: one-sided exact binomial tests of an annotator's leave-one-out agreement
  against chance (what a uniform random clicker would reach, given the options the project
  offers), and a one-sided Fisher exact test against the median other annotator; the p-values
  of all annotators are corrected together (Holm), and the flag needs a corrected p below
  1 - CONFIDENCE.
- Position bias: one-sided exact binomial tests that the annotator's left share lies beyond
  both one half and the project's own left share (the median of the other annotators', so
  that one always-left clicker does not move it) by BIAS_MARGIN, one test a side, Holm-corrected
  over all annotators at CONFIDENCE like the agreement tests.
- Left bias against the model: a one-sided test that the annotator chose the left side more
  often than the crowd model's strengths expect of the comparisons they saw (each vote's chance
  of the left side given a side was chosen: the left candidate's Bradley-Terry chance; an
  exact binomial test at their mean), so a run of comparisons whose better response happened
  to be on the left is not held against them; Holm-corrected over the annotators at
  CONFIDENCE (crowd_bias.py runs it).
- Under an adaptive policy the comparisons with three votes or more are not a fair sample, so
  leave-one-out agreement is reported but not meaningful, and not tested.
"""

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# scipy and statsmodels are imported in the functions that use them, not here: with pandas and
# pyarrow, which statsmodels loads, they are about 150 MiB of a process's memory, and every
# process imports this module as Django starts (the admin's autodiscovery), an import or a web
# worker too, while only the statistics use them (tests/annotate/test_startup_memory.py).
from apps.projects.models import AssignmentPolicy, Project, Scheme

# The confidence at which the agreement tests flag, after the correction over annotators.
CONFIDENCE = 0.99
# A left share is a bias when it is significantly beyond one half and the project's share by this.
BIAS_MARGIN = 0.05
# Policies that choose the next comparison from the votes it has: uncertain_first gives a third
# vote only where the first two split, so the comparisons leave-one-out counts are the split ones.
ADAPTIVE_POLICIES = frozenset({AssignmentPolicy.UNCERTAIN_FIRST.value})
# The longest run of comparisons `min_comparisons` looks through, and how many in a row past
# its answer must be flagged too (the p-value wobbles as the clicker's agreements round up).
LONGEST = 100_000
MIN_RUN = 20
ADAPTIVE_NOTE = (
    "not meaningful: under the {policy} policy a comparison gets a third vote only where the "
    "first ones split, so the comparisons with three votes or more are mostly disagreements"
)
STOPPING_NOTE = (
    "not meaningful: with adaptive stopping a comparison stops once its first votes agree, so "
    "the comparisons with three votes or more are mostly disagreements"
)
# What the audit sample (Project.audit_rate) is, where a figure comes from it.
AUDIT_NOTE = (
    "over the audit sample only: comparisons drawn at random that every policy fills to the full "
    "overlap and that never stop early, so agreement there is that of a uniform sample"
)


@dataclass(frozen=True, slots=True)
class Design:
    """What of a project the tests depend on: the policy, and a uniform random clicker's chance
    of each option (candidate A, candidate B, tie, both bad: the order of `stats.OPTIONS`)."""

    policy: str
    clicker: tuple[float, float, float, float]
    # Adaptive stopping on (Project.stop_margin above 0): which comparisons get more votes then
    # depends on the votes too, whatever the policy.
    stopping: bool = False

    @property
    def adaptive(self) -> bool:
        return self.policy in ADAPTIVE_POLICIES or self.stopping

    @property
    def sample(self) -> str:
        """Which comparisons agreement is over: "adaptive" (chosen by the policy from the votes,
        biased) or "all" (every comparison with enough votes). Where an adaptive project has an
        audit sample, the figures say "audit" instead (`audit_sample`)."""
        return "adaptive" if self.adaptive else "all"

    @property
    def note(self) -> str | None:
        if self.policy in ADAPTIVE_POLICIES:
            return ADAPTIVE_NOTE.format(policy=self.policy)
        return STOPPING_NOTE if self.stopping else None

    def audit_sample(self, audited: bool) -> tuple[str, str | None]:
        """(sample, note) of per-annotator agreement: over the audit sample where the design is
        adaptive and the sample has votes (`audited`), else `sample` and `note`."""
        if self.adaptive and audited:
            return "audit", AUDIT_NOTE
        return self.sample, self.note

    @classmethod
    def of(cls, project: Project) -> "Design":
        """A clicker presses one of the buttons the annotator sees, all alike: left, right, tie
        and both bad as the project allows them; on a graded project the seven grades (three for
        each side, the middle one a tie) and both bad if allowed."""
        if project.scheme == Scheme.GRADED:
            buttons = (3, 3, 1, int(project.allow_both_bad))
        else:
            buttons = (1, 1, int(project.allow_tie), int(project.allow_both_bad))
        total = sum(buttons)
        a, b, tie, both_bad = (n / total for n in buttons)
        return cls(
            policy=project.policy, clicker=(a, b, tie, both_bad), stopping=project.stop_margin > 0
        )


# The defaults of a new project: pairwise, ties and both-bad allowed, breadth first.
DEFAULT_DESIGN = Design(policy=AssignmentPolicy.BREADTH_FIRST.value, clicker=(0.25,) * 4)


def p_below_chance(agree: int, counted: int, chance: float) -> float:
    """One-sided exact binomial test: the chance of so few agreements from a clicker."""
    from scipy.stats import binomtest

    return float(binomtest(agree, counted, chance, alternative="less").pvalue)


def p_below_other(agree: int, counted: int, other_agree: int, other_counted: int) -> float:
    """One-sided Fisher exact test that one annotator's agreement rate is below another's: the
    other's rate is an estimate too, so a few perfect votes of theirs prove nothing."""
    from scipy.stats import hypergeom

    return float(hypergeom.cdf(agree, counted + other_counted, agree + other_agree, counted))


@functools.lru_cache(maxsize=256)  # annotators mostly share their median other, and chance
def min_comparisons(
    chance: float, other_agree: int, other_counted: int, alpha: float
) -> int | None:
    """How many comparisons it takes to flag a clicker who agrees exactly at chance (rounded up)
    as below the other annotator (`p_below_other` under `alpha`): the smallest n from which on
    the next MIN_RUN are flagged too. None when the other's evidence is too thin for any run of
    LONGEST comparisons or fewer to do it."""

    def flagged(n: int) -> bool:
        return p_below_other(math.ceil(chance * n - 1e-9), n, other_agree, other_counted) < alpha

    return first_flagged_run(flagged, first=1, longest=LONGEST)


def first_flagged_run(
    flagged: Callable[[int], bool], *, first: int, longest: int, run: int = MIN_RUN
) -> int | None:
    """The smallest n (at least `first`) from which `flagged` holds for `run` values in a row;
    None when `flagged(longest)` does not hold. A test's p-value falls with the evidence bar the
    rounding of a share: bisect, then walk on past the wobble."""
    if not flagged(longest):
        return None
    low, high = first, longest
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if flagged(middle) else (middle + 1, high)
    start, seen = low, 0
    while seen < run:
        if flagged(start + seen):
            seen += 1
        else:
            start, seen = start + seen + 1, 0
    return start


def _rounded(value: float | None) -> float | None:
    """Four significant digits: p-values span many orders of magnitude."""
    return None if value is None else float(f"{value:.4g}")


def agreement_tests(
    agree: Sequence[int],
    counted: Sequence[int],
    chance: Sequence[float | None],
    *,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any] | None]:
    """Per annotator (None without a counted comparison): whether their agreement with the
    others' majority is significantly below chance (`p_below_chance`) or below the median other
    annotator's (`p_below_other`; of an even number, the lower one), with Holm's correction over
    all the tests of all annotators, and the evidence a random clicker would need to be flagged.

    `chance[i]` is the agreement a uniform random clicker would reach on annotator i's
    comparisons (the mean of its chance of each comparison's majority option).
    """
    alpha = 1 - confidence
    ranked = sorted(
        (a / n, n, a, i) for i, (a, n) in enumerate(zip(agree, counted, strict=True)) if n
    )
    medians: list[tuple[int, int] | None] = []
    raw: list[float] = []
    for i, n in enumerate(counted):
        others = [(a, m) for _, m, a, j in ranked if j != i]
        median = others[(len(others) - 1) // 2] if n and others else None
        medians.append(median)
        if n:
            raw.append(p_below_chance(agree[i], n, chance[i] or 0.0))
        if median is not None:
            raw.append(p_below_other(agree[i], n, *median))
    from statsmodels.stats.multitest import multipletests

    holm = iter(multipletests(raw, method="holm")[1] if raw else [])
    tests: list[dict[str, Any] | None] = []
    for i, median in enumerate(medians):
        a, n, at_chance = agree[i], counted[i], chance[i] or 0.0
        if not n:
            tests.append(None)
            continue
        p_chance, p_chance_holm = p_below_chance(a, n, at_chance), float(next(holm))
        p_others = None if median is None else p_below_other(a, n, *median)
        p_others_holm = None if median is None else float(next(holm))
        tests.append(
            {
                "confidence": confidence,
                "correction": f"Holm over {len(raw)} tests",
                "chance": _rounded(at_chance),
                "p_chance": _rounded(p_chance),
                "p_chance_holm": _rounded(p_chance_holm),
                "others_median": None if median is None else _rounded(median[0] / median[1]),
                "others_median_comparisons": None if median is None else median[1],
                "p_others": _rounded(p_others),
                "p_others_holm": _rounded(p_others_holm),
                "flagged": any(p is not None and p < alpha for p in (p_chance_holm, p_others_holm)),
                # At the Bonferroni level, Holm's first step: the evidence that flags for sure.
                "random_clicker_min_comparisons": None
                if median is None or at_chance >= median[0] / median[1]
                else min_comparisons(at_chance, *median, alpha / len(raw)),
            }
        )
    return tests


def wilson_interval(successes: int, trials: int) -> list[float] | None:
    """The 95% Wilson score interval for a binomial share, [low, high]; None without trials."""
    if not trials:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return [round(float(low), 4), round(float(high), 4)]


def p_share_above(successes: int, trials: int, bound: float) -> float:
    """One-sided exact binomial test that a share exceeds `bound`."""
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, bound, alternative="greater").pvalue)


def bias_bounds(project_share: float | None, *, margin: float = BIAS_MARGIN) -> tuple[float, float]:
    """The left shares beyond which a lean is a bias: `margin` past both one half and the
    project's own share (where known), so that an honest annotator is not flagged in a project
    whose other annotators lean to one side, nor a project-wide lean (a layout that favours one
    side) counted against each one."""
    references = [0.5] if project_share is None else [0.5, project_share]
    return max(min(references) - margin, 0.0), min(max(references) + margin, 1.0)


def bias_tests(
    left: Sequence[int],
    sides: Sequence[int],
    project_share: Sequence[float | None],
    *,
    margin: float = BIAS_MARGIN,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any] | None]:
    """Per annotator (None without a choice of a side): whether their left share is beyond
    `bias_bounds` (one-sided exact binomial tests, one a side), with Holm's correction over
    both sides of all annotators. Uncorrected, a 95% interval clears the bounds for one honest
    annotator in a few dozen by chance."""
    alpha = 1 - confidence
    bounds = [bias_bounds(share, margin=margin) for share in project_share]
    raw: list[float] = []
    for k, n, (low, high) in zip(left, sides, bounds, strict=True):
        if n:
            raw += [p_share_above(k, n, high), p_share_above(n - k, n, 1 - low)]
    from statsmodels.stats.multitest import multipletests

    holm = iter(multipletests(raw, method="holm")[1] if raw else [])
    tests: list[dict[str, Any] | None] = []
    for n, (low, high) in zip(sides, bounds, strict=True):
        if not n:
            tests.append(None)
            continue
        p_left, p_right = float(next(holm)), float(next(holm))
        side = "left" if p_left < alpha else "right" if p_right < alpha else None
        tests.append(
            {
                "confidence": confidence,
                "correction": f"Holm over {len(raw)} tests",
                "bounds": [round(low, 4), round(high, 4)],
                "p_left_holm": _rounded(p_left),
                "p_right_holm": _rounded(p_right),
                "side": side,
            }
        )
    return tests


# Above this many votes the Poisson-binomial tail is its normal approximation (with a
# continuity correction) rather than the exact convolution, whose cost grows as n².
EXACT_TAIL_MAX = 3000


def p_left_beyond_expected(left: int, chances: np.ndarray) -> float:
    """One-sided test that `left` choices of the left side are more than a model expects: the
    Poisson-binomial upper tail P(L >= left), L the sum of independent choices each left with its
    vote's chance (`chances`, as the reliability-weighted leaderboard's strengths give them).

    The tail is exact only if the chances are. The crowd model's own strengths came out too
    steep at a few hundred votes, so their chances were too extreme and their variance too
    small (in 60 simulated projects like bench/quality.py's `--quick` the tail flagged 17 of 360
    honest annotators); the weighted leaderboard's hold the truth (weighted_bt), and with them
    the tail flagged 0 of 300 honest annotators in 50 simulated projects of 900 and 3,000 votes,
    and 35 of 50 left-biased ones (a binomial test at the mean chance: 22 of 50)."""
    n = len(chances)
    if not n or left <= 0:
        return 1.0
    if left > n:
        return 0.0
    if n <= EXACT_TAIL_MAX:
        mass = np.zeros(n + 1)
        mass[0] = 1.0
        for k, p in enumerate(np.clip(chances, 0.0, 1.0), start=1):
            mass[1 : k + 1] = mass[1 : k + 1] * (1 - p) + mass[:k] * p
            mass[0] *= 1 - p
        return float(min(max(mass[left:].sum(), 0.0), 1.0))
    mean = float(chances.sum())
    spread = math.sqrt(float((chances * (1 - chances)).sum()))
    if spread == 0:
        return 1.0 if left <= mean else 0.0
    from scipy.stats import norm

    return float(norm.sf((left - 0.5 - mean) / spread))


def always_left_min_choices(chances: np.ndarray, alpha: float) -> int | None:
    """The evidence that flags for sure: how many choices of a side, every one of them left,
    an annotator needs for `p_left_beyond_expected` to fall below `alpha` (Holm's first step,
    the Bonferroni level) at chances like their own votes': all left has chance the product of
    the chances, so with their geometric mean g, g^n < alpha. None without a sided vote, or
    when the model expects left always."""
    if not len(chances):
        return None
    if float(chances.min()) <= 0:
        return 1
    mean_log = float(np.log(np.clip(chances, 0.0, 1.0)).mean())
    if mean_log >= 0:
        return None
    return max(math.floor(math.log(alpha) / mean_log) + 1, 1)


def left_bias_tests(
    left: Sequence[int],
    chances: Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any] | None]:
    """Per annotator (None without a choice of a side): whether they chose the left side more
    often than a model of the votes expects of the comparisons they saw (`chances[i]`, the left
    chance of each of their sided votes), one-sided (`p_left_beyond_expected`), with Holm's
    correction over the annotators at `confidence`."""
    alpha = 1 - confidence
    raw = [p_left_beyond_expected(k, c) for k, c in zip(left, chances, strict=True) if len(c)]
    from statsmodels.stats.multitest import multipletests

    pairs = iter(zip(raw, multipletests(raw, method="holm")[1] if raw else [], strict=True))
    tests: list[dict[str, Any] | None] = []
    for k, c in zip(left, chances, strict=True):
        if not len(c):
            tests.append(None)
            continue
        p_value, p_holm = next(pairs)
        tests.append(
            {
                "left_share": _rounded(k / len(c)),
                "expected": _rounded(float(c.mean())),
                "n": len(c),
                "p_value": _rounded(p_value),
                "p_holm": _rounded(float(p_holm)),
                "confidence": confidence,
                "correction": f"Holm over {len(raw)} tests",
                "flagged": bool(p_holm < alpha),
                "min_evidence": always_left_min_choices(c, alpha / len(raw)),
            }
        )
    return tests


# A one-sided test of one annotator's count against the other annotators' pooled one:
# p(their hits, their trials, the others' hits, the others' trials).
AgainstOthers = Callable[[int, int, int, int], float]


@dataclass(frozen=True)
class OthersTests:
    """`tests_against_others`' results: per tested annotator index, (p value, Holm-adjusted);
    how many were tested; the confidence."""

    by_annotator: dict[int, tuple[float, float]]
    tested: int
    confidence: float

    def entry(self, i: int, **extra: Any) -> dict[str, Any] | None:
        """Annotator i's test as the reports give it (None when not tested), with `extra`."""
        if i not in self.by_annotator:
            return None
        p_value, p_holm = self.by_annotator[i]
        return {
            "confidence": self.confidence,
            "correction": f"Holm over {self.tested} tests",
            "p_value": float(f"{p_value:.4g}"),
            "p_holm": float(f"{p_holm:.4g}"),
            "flagged": bool(p_holm < 1 - self.confidence),
            **extra,
        }


def tests_against_others(
    trials: Sequence[int],
    hits: Sequence[int],
    *,
    minimum: int,
    p_value: AgainstOthers,
    confidence: float = CONFIDENCE,
) -> OthersTests:
    """Each annotator with at least `minimum` trials, when the others have some, tested against
    the others' pooled hits (`p_value`), with Holm's correction over the tested annotators: the
    shape of the transitivity and repeat-consistency flags."""
    all_trials, all_hits = int(sum(trials)), int(sum(hits))
    tested = [i for i, n in enumerate(trials) if n >= minimum and all_trials - n > 0]
    raw = [
        p_value(int(hits[i]), int(trials[i]), all_hits - int(hits[i]), all_trials - int(trials[i]))
        for i in tested
    ]
    from statsmodels.stats.multitest import multipletests

    holm = multipletests(raw, method="holm")[1] if raw else []
    return OthersTests(
        by_annotator={i: (raw[k], float(holm[k])) for k, i in enumerate(tested)},
        tested=len(raw),
        confidence=confidence,
    )
