"""`aggregate=reliability` on the overall choice of pairwise comparisons: the crowd model's
posterior (crowd.py) per comparison, fitted once before an export's rows stream.

The variant follows the votes: the vote-level one (each honest vote its own draw from the
models' Bradley-Terry-Davidson chances) when most votes compare two named models, since the
strengths are what tells an honest annotator from a spammer there; else the comparison-level
one, which reads reliability from agreement within a comparison (the vote-level one cannot,
without known models: see crowd.fit_crowd).

A comparison's label is the candidate of higher posterior chance of being better, and its
`label_confidence` is P(that one is better | one of the two is), within 0.5..1: the posterior's
tie share is left out, as the old Dawid-Skene's truths were A or B. As before, a comparison
with no vote for either candidate (only ties and both-bad) is left out, and so is a tie in
posterior; so is a comparison the fit did not see (first voted after it).
"""

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from apps.agreement.crowd import CrowdVotes, fit_crowd
from apps.agreement.stats import VoteColumns

# Two candidates whose posteriors are this close are a tie: the comparison is left out.
TIE_EPSILON = 1e-9


@dataclass(frozen=True)
class CrowdLabels:
    """Per comparison (sorted ids), the posterior chances that A, then B, is better."""

    variant: Literal["vote", "comparison"]
    comparison_ids: np.ndarray  # int64, sorted
    better: np.ndarray  # (comparisons, 2): P(A better), P(B better)
    votes: int
    converged: bool

    def decide(self, comparison_id: int, named: bool) -> tuple[str | None, float | None]:
        """("a" or "b", P(it is better | A or B is)) for a comparison; (None, None) when no
        vote names a candidate (`named` False), the fit did not see it, or the two tie."""
        at = int(np.searchsorted(self.comparison_ids, comparison_id))
        if not named or at == len(self.comparison_ids) or self.comparison_ids[at] != comparison_id:
            return None, None
        a, b = float(self.better[at, 0]), float(self.better[at, 1])
        if abs(a - b) < TIE_EPSILON:
            return None, None
        return ("a", a / (a + b)) if a > b else ("b", b / (a + b))

    def describe(self) -> str:
        """The card's words for the fit."""
        kind = (
            "vote-level (most votes compare two named models: each honest vote is its own "
            "draw from the models' strengths)"
            if self.variant == "vote"
            else "comparison-level (most votes compare unnamed models: each comparison has "
            "one outcome that honest votes name)"
        )
        return (
            f"Crowd model, {kind}, fitted to {self.votes} votes"
            + ("" if self.converged else " (EM stopped at its iteration limit)")
            + "."
        )


def crowd_labels(votes: VoteColumns, *, include_gold: bool = False) -> CrowdLabels | None:
    """The crowd model's labels from `stats_votes`' columns (every batch, so a row's label does
    not depend on the slice exported); gold comparisons only with `include_gold`. None without
    votes. Only the ids and two chances per comparison are kept: the columns can be freed."""
    if include_gold:
        votes = replace(votes, is_gold=np.zeros(len(votes), dtype=bool))
    crowd = CrowdVotes.of_columns(votes)
    if not len(crowd):
        return None
    known = (crowd.model_a >= 0) & (crowd.model_b >= 0)
    variant: Literal["vote", "comparison"] = (
        "vote" if 2 * int(known.sum()) > len(crowd) else "comparison"
    )
    fit = fit_crowd(crowd, truth=variant)
    return CrowdLabels(
        variant=variant,
        comparison_ids=fit.comparison_ids.copy(),
        better=np.ascontiguousarray(fit.posterior[:, :2]),
        votes=len(crowd),
        converged=fit.converged,
    )
