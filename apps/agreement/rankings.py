"""Statistics of listwise rankings: places, the merged ranking, Kendall's W, and what a ranking
says of each pair.

A ranking (Judgment.ranking) is a list of groups of candidate ids, best first; a group of two or
more is a tie. Every ranking of k responses says, for each of its k(k-1)/2 pairs, which one is
better or that they tie (`pair_option`).

The merged ranking of a prompt orders its responses by their mean place over the annotators'
rankings (tied responses share the mean of the places they span, 1-based); equal means tie, and
the merged ranks are competition ranks ("1, 2, 2, 4"). Exact fractions keep it deterministic.
"""

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from apps.judging.models import Choice

Ranking = list[list[int]]


def places_of(ranking: Ranking) -> dict[int, Fraction]:
    """Each candidate's place in one ranking, 1-based; a tied group shares the mean of the
    places it spans (a group of two after the first place: both 2.5)."""
    places: dict[int, Fraction] = {}
    start = 1
    for group in ranking:
        shared = Fraction(2 * start + len(group) - 1, 2)
        for pk in group:
            places[pk] = shared
        start += len(group)
    return places


def merged_ranks(candidate_ids: Sequence[int], rankings: Sequence[Ranking]) -> dict[int, Any]:
    """{candidate id: (merged competition rank, mean place)} over `rankings`."""
    means = {pk: Fraction(0) for pk in candidate_ids}
    for ranking in rankings:
        for pk, place in places_of(ranking).items():
            means[pk] += place
    if rankings:
        means = {pk: total / len(rankings) for pk, total in means.items()}
    ordered = sorted(candidate_ids, key=lambda pk: means[pk])
    merged: dict[int, Any] = {}
    for index, pk in enumerate(ordered):
        same = index and means[ordered[index - 1]] == means[pk]
        rank = merged[ordered[index - 1]][0] if same else index + 1
        merged[pk] = (rank, means[pk])
    return merged


def kendall_w(candidate_ids: Sequence[int], rankings: Sequence[Ranking]) -> float | None:
    """Kendall's coefficient of concordance W among the rankings, corrected for ties: 1 when
    every annotator ranks alike, 0 when their rankings cancel out; None for fewer than two
    rankings or when no ranking orders anything (every response tied)."""
    m, n = len(rankings), len(candidate_ids)
    if m < 2 or n < 2:
        return None
    totals = {pk: Fraction(0) for pk in candidate_ids}
    ties = 0
    for ranking in rankings:
        for pk, place in places_of(ranking).items():
            totals[pk] += place
        ties += sum(len(g) ** 3 - len(g) for g in ranking)
    mean = Fraction(m * (n + 1), 2)
    spread = sum((total - mean) ** 2 for total in totals.values())
    denominator = m * m * (n**3 - n) - m * ties
    if denominator == 0:
        return None
    return round(float(12 * spread / denominator), 4)


def pair_option(a: int, b: int, ranking: Ranking) -> str:
    """What one ranking says of the pair (a, b): "a", "b" or a tie (the same group)."""
    places = places_of(ranking)
    if places[a] < places[b]:
        return "a"
    if places[b] < places[a]:
        return "b"
    return str(Choice.TIE)


def pair_votes(a: int, b: int, rankings: Sequence[Ranking]) -> Counter[str]:
    """The votes the rankings give the pair (a, b)."""
    return Counter(pair_option(a, b, ranking) for ranking in rankings)
