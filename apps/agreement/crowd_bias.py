"""Left (position) bias as a test against the crowd model: did an annotator choose the left
response more often than the fitted model expects of the comparisons they saw?

Each of the annotator's votes for a side has a chance of the left side under the fitted
strengths: an honest judgment picks candidate A over B with the Bradley-Terry-Davidson chance
given a side was chosen, 1 / (1 + e^-(s_A - s_B)), and the left side is A or B as the screen
showed them. Comparisons of models the fit has no strengths for count one half. The expected
left share is the mean of those chances, not one half: an annotator whose comparisons happened
to put the better response on the left is expected to choose left more often. The annotator's
own habits (their reliability and random answers' left share in the fit) are left out of the
expectation, else it would absorb the very bias under test. `flags.left_bias_tests` does the
one-sided exact binomial test at the expected share (not the Poisson-binomial tail of the
chances, which the too-steep strengths of a small fit make anti-conservative; see
`flags.p_left_beyond_expected`) and Holm's correction at flags.CONFIDENCE.
"""

from typing import Any

import numpy as np

from apps.agreement.crowd import UNKNOWN_MODEL, CrowdFit, CrowdVotes
from apps.agreement.crowd_steps import LEFT, RIGHT
from apps.agreement.flags import CONFIDENCE, left_bias_tests

MEANING = (
    "a one-sided test that the annotator chose the left response more often than the crowd "
    "model's strengths expect of the comparisons they saw (expected), at {confidence:.0%} "
    "confidence with Holm's correction over the annotators; min_evidence: the choices of a "
    "side, all left, that an always-left clicker needs to be flagged"
)


def left_chances(crowd: CrowdVotes, fit: CrowdFit) -> np.ndarray:
    """Per vote, the chance of the left side given a side was chosen, under the fitted
    strengths (one half where a model has no strength); meaningful on sided votes."""
    strength = np.nan_to_num(fit.strength, nan=0.0)
    known = (crowd.model_a != UNKNOWN_MODEL) & (crowd.model_b != UNKNOWN_MODEL)
    if len(fit.strength):
        known &= fit.compared[np.maximum(crowd.model_a, 0)]
        known &= fit.compared[np.maximum(crowd.model_b, 0)]
        diff = strength[np.maximum(crowd.model_a, 0)] - strength[np.maximum(crowd.model_b, 0)]
    else:
        diff = np.zeros(len(crowd))
    a_chance = np.where(known, 1 / (1 + np.exp(-diff)), 0.5)
    chance: np.ndarray = np.where(crowd.a_left, a_chance, 1 - a_chance)
    return chance


def left_bias(
    crowd: CrowdVotes, fit: CrowdFit, *, confidence: float = CONFIDENCE
) -> list[dict[str, Any] | None]:
    """Per annotator (in `fit.annotators` order; None without a choice of a side): the left
    bias test, {left_share, expected, p_value, p_holm, n, min_evidence, flagged, ...}."""
    sided = (crowd.choice == LEFT) | (crowd.choice == RIGHT)
    chance = left_chances(crowd, fit)
    size = len(fit.annotators)
    order = np.argsort(crowd.annotator[sided], kind="stable")
    by_annotator = np.split(
        chance[sided][order], np.cumsum(np.bincount(crowd.annotator[sided], minlength=size))[:-1]
    )
    lefts = np.bincount(crowd.annotator[crowd.choice == LEFT], minlength=size)
    return left_bias_tests([int(k) for k in lefts], by_annotator, confidence=confidence)
