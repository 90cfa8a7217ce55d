"""labels.CrowdLabels: the reliability aggregation's decision per comparison, from the crowd
model's posterior (the fit itself: test_crowd.py, test_crowd_votes.py; through the export:
tests/exports/test_reliability.py)."""

import numpy as np
import pytest

from apps.agreement.labels import CrowdLabels, crowd_labels
from apps.agreement.stats import Vote, VoteColumns


def labels(better: list[list[float]]) -> CrowdLabels:
    return CrowdLabels(
        variant="vote",
        comparison_ids=np.array([3, 7, 9], dtype=np.int64),
        better=np.array(better),
        votes=9,
        converged=True,
    )


def test_the_likelier_candidate_with_its_chance_given_one_is_better():
    decided = labels([[0.6, 0.2], [0.1, 0.3], [0.4, 0.4]])
    assert decided.decide(3, True) == ("a", pytest.approx(0.75))
    assert decided.decide(7, True) == ("b", pytest.approx(0.75))
    # A tie in posterior, no vote for either candidate, a comparison the fit did not see.
    assert decided.decide(9, True) == (None, None)
    assert decided.decide(3, False) == (None, None)
    assert decided.decide(5, True) == (None, None)
    assert decided.decide(10, True) == (None, None)


def vote(comparison: int, annotator: str, option: str, models: tuple[str, str], **kw) -> Vote:
    side = {"a": "left", "b": "right"}.get(option)
    return Vote(
        comparison=comparison, annotator=annotator, option=option, side=side, strength=None,
        model_a=models[0], model_b=models[1], is_gold=kw.get("gold", False), gold_correct=None,
        duration_ms=None,
    )  # fmt: skip


def test_the_variant_follows_whether_most_votes_name_their_models():
    named = [vote(c, f"ann-{j}", "a" if (c + j) % 3 else "b", ("m1", "m2")) for c in range(6)
             for j in range(3)]  # fmt: skip
    unnamed = [vote(10 + c, f"ann-{j}", "a", ("", "")) for c in range(7) for j in range(3)]
    assert crowd_labels(VoteColumns.of(named + unnamed[:6])).variant == "vote"
    assert crowd_labels(VoteColumns.of(named + unnamed)).variant == "comparison"


def test_gold_votes_count_only_when_included():
    votes = [vote(1, "ann-1", "a", ("m1", "m2")), vote(2, "ann-1", "b", ("m1", "m2"), gold=True)]
    assert crowd_labels(VoteColumns.of(votes)).comparison_ids.tolist() == [1]
    both = crowd_labels(VoteColumns.of(votes), include_gold=True)
    assert both.comparison_ids.tolist() == [1, 2]
    assert crowd_labels(VoteColumns.of(votes[1:])) is None
