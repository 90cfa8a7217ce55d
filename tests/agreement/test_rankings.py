"""Statistics of listwise rankings, by hand: places, the merged ranking and Kendall's W."""

from fractions import Fraction

from apps.agreement.rankings import kendall_w, merged_ranks, places_of


def test_places_share_the_mean_of_a_tied_group():
    assert places_of([[7], [8, 9], [10]]) == {
        7: Fraction(1),
        8: Fraction(5, 2),
        9: Fraction(5, 2),
        10: Fraction(4),
    }
    merged = merged_ranks([1, 2, 3], [[[1], [2], [3]], [[2], [1], [3]]])
    assert {pk: rank for pk, (rank, _) in merged.items()} == {1: 1, 2: 1, 3: 3}


def test_kendall_w_on_hand_computed_cases():
    same = [[[1], [2], [3]]] * 3
    assert kendall_w([1, 2, 3], same) == 1.0
    assert kendall_w([1, 2], [[[1], [2]], [[2], [1]]]) == 0.0
    assert kendall_w([1, 2, 3], [[[1], [2], [3]]]) is None  # one ranking agrees with itself
    assert kendall_w([1, 2, 3], [[[1, 2, 3]], [[1, 2, 3]]]) is None  # nothing ordered
