"""Left (position) bias as a test against the model of the votes: did an annotator choose the
left response more often than the models' strengths expect of the comparisons they saw?

Each of the annotator's votes for a side has a chance of the left side under the strengths of
the reliability-weighted leaderboard (weighted_bt, which hold the truth where the crowd model's
own came out too steep): an honest judgment picks candidate A over B with the Bradley-Terry
chance given a side was chosen, 1 / (1 + e^-(s_A - s_B)), and the left side is A or B as the
screen showed them. Comparisons of models without a strength count one half. The expected left
share is the mean of those chances, not one half: an annotator whose comparisons happened to put
the better response on the left is expected to choose left more often. `flags.left_bias_tests`
does the one-sided Poisson-binomial test of the left choices against those chances
(`flags.p_left_beyond_expected`) and Holm's correction at flags.CONFIDENCE. An annotator who is
biased only when unsure shows it on the close comparisons, where their chances are near one
half: the tail weighs those as the chances say.
"""

from typing import Any

import numpy as np

from apps.agreement.crowd import UNKNOWN_MODEL, CrowdVotes
from apps.agreement.crowd_steps import LEFT, RIGHT
from apps.agreement.flags import CONFIDENCE, left_bias_tests

MEANING = (
    "a one-sided test that the annotator chose the left response more often than the "
    "reliability-weighted leaderboard's strengths expect of the comparisons they saw (expected: "
    "the mean chance), at {confidence:.0%} confidence with Holm's correction over the "
    "annotators; min_evidence: the choices of a side, all left, that an always-left clicker "
    "needs to be flagged"
)


def left_chances(crowd: CrowdVotes, strength: np.ndarray) -> np.ndarray:
    """Per vote, the chance of the left side given a side was chosen, under `strength` (per
    model; NaN where a model has none, and then one half); meaningful on sided votes."""
    known = (crowd.model_a != UNKNOWN_MODEL) & (crowd.model_b != UNKNOWN_MODEL)
    if len(strength):
        a, b = np.maximum(crowd.model_a, 0), np.maximum(crowd.model_b, 0)
        known &= ~np.isnan(strength[a]) & ~np.isnan(strength[b])
        filled = np.nan_to_num(strength, nan=0.0)
        diff = filled[a] - filled[b]
    else:
        diff = np.zeros(len(crowd))
    a_chance = np.where(known, 1 / (1 + np.exp(-diff)), 0.5)
    chance: np.ndarray = np.where(crowd.a_left, a_chance, 1 - a_chance)
    return chance


def left_bias(
    crowd: CrowdVotes, strength: np.ndarray, *, confidence: float = CONFIDENCE
) -> list[dict[str, Any] | None]:
    """Per annotator (in `crowd.annotators` order; None without a choice of a side): the left
    bias test, {left_share, expected, p_value, p_holm, n, min_evidence, flagged, ...}."""
    sided = (crowd.choice == LEFT) | (crowd.choice == RIGHT)
    chance = left_chances(crowd, strength)
    size = len(crowd.annotators)
    order = np.argsort(crowd.annotator[sided], kind="stable")
    by_annotator = np.split(
        chance[sided][order], np.cumsum(np.bincount(crowd.annotator[sided], minlength=size))[:-1]
    )
    lefts = np.bincount(crowd.annotator[crowd.choice == LEFT], minlength=size)
    return left_bias_tests([int(k) for k in lefts], by_annotator, confidence=confidence)
