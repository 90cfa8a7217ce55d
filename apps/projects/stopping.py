"""Adaptive stopping: the vote margin at which a comparison is decided.

Each valid vote for a side is taken as right with probability ACCURACY (a tie or "both bad"
says nothing about which side is better), and both sides start equally likely. After votes_a
for one side and votes_b for the other, the posterior that the leading side is better depends
on the margin m = |votes_a - votes_b| alone: ACCURACY^m / (ACCURACY^m + (1 - ACCURACY)^m),
which is 1 / (1 + 0.25^m) at 0.8. A comparison is decided once that reaches the project's
stop_confidence; the queue's complete rule (apps.batches.queue_order) reads the margin.
"""

ACCURACY = 0.8
# Float slack: 1 / (1 + 0.25) is 0.8 only up to rounding, and 0.8 must give a margin of 1.
_SLACK = 1e-12


def posterior(margin: int) -> float:
    """The posterior that the side leading by `margin` votes is the better one."""
    wrong = (1 - ACCURACY) / ACCURACY
    return 1 / (1 + wrong**margin)


def stop_margin(confidence: float | None) -> int:
    """The smallest margin |votes_a - votes_b| whose posterior reaches `confidence`: 0.8 -> 1,
    0.9 -> 2, 0.95 -> 3, 0.99 -> 4, 0.999 -> 5. At least 1 (no comparison is decided before
    a vote); 0 for None, which is "off". `confidence` is below 1 (Project's constraint)."""
    if confidence is None:
        return 0
    if not 0 < confidence < 1:
        raise ValueError(f"A stopping confidence is above 0 and below 1, not {confidence}.")
    margin = 1
    while posterior(margin) < confidence - _SLACK:
        margin += 1
    return margin
