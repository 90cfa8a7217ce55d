"""The model-pair doubt uncertain_first spends its votes by (apps.agreement.pair_doubt): the
levels on hand-computed cases, their writing onto the comparisons, the queue's order, and the
dashboard's refresh that writes them from the real crowd fit."""

import math

import pytest
from django.core.cache import cache

from apps.agreement import pair_doubt
from apps.agreement.pair_doubt import (
    band_of,
    level_of,
    pair_doubt_update,
    pair_z,
    pair_zs,
)
from apps.batches.models import Comparison
from apps.dashboard.services import figures_refresh
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.services import membership_add


def entry(model, score, half_width):
    """A leaderboard entry whose interval gives a standard error of half_width / 1.96."""
    return {"model": model, "score": score, "ci95": [score - half_width, score + half_width]}


# Half-widths of 19.6 give each score a standard error of 10, so a difference's is 10 * sqrt(2)
# = 14.142: z = difference / 14.142.
@pytest.mark.parametrize(
    ("difference", "z"),
    [(0, 0.0), (20, 1.41421), (30, 2.12132), (50, 3.53553), (-50, 3.53553)],
)
def test_z_of_two_scores(difference, z):
    first, second = entry("a", 1000, 19.6), entry("b", 1000 + difference, 19.6)
    assert pair_z(first, second) == pytest.approx(z, abs=1e-4)
    assert pair_z(second, first) == pytest.approx(z, abs=1e-4)


def test_unequal_intervals_add_in_quadrature():
    # Standard errors 30 and 40: the difference's is 50.
    assert pair_z(entry("a", 1000, 30 * 1.96), entry("b", 1100, 40 * 1.96)) == pytest.approx(
        2.0, abs=1e-3
    )


def test_intervals_of_no_width():
    assert pair_z(entry("a", 1000, 0), entry("b", 1001, 0)) == math.inf
    assert pair_z(entry("a", 1000, 0), entry("b", 1000, 0)) == 0.0


@pytest.mark.parametrize(
    ("z", "level", "band"),
    [
        (0.0, 0, "undecided"),
        (0.49, 0, "undecided"),
        (0.5, 1, "undecided"),
        (1.64, 3, "undecided"),  # the order wrong with more than 5% probability
        (1.65, 3, "decided"),
        (2.99, 5, "decided"),
        (3.0, 6, "settled"),
        (3.99, 7, "settled"),
        (4.0, 8, "settled"),
        (math.inf, 8, "settled"),
    ],
)
def test_levels_are_half_steps_of_z_and_bands_its_confidence(z, level, band):
    assert level_of(z) == level
    assert band_of(z) == band


def test_every_pair_in_both_orders_and_entries_without_an_interval_left_out():
    board = [
        entry("m1", 1100, 19.6),
        entry("m2", 1080, 19.6),
        entry("m3", 900, 19.6),
        {"model": "m4", "score": None, "ci95": None},
    ]
    zs = pair_zs(board)
    assert set(zs) == {(a, b) for a in ("m1", "m2", "m3") for b in ("m1", "m2", "m3") if a != b}
    assert zs["m1", "m2"] == zs["m2", "m1"] == pytest.approx(20 / (10 * math.sqrt(2)), abs=1e-3)
    assert zs["m2", "m3"] == pytest.approx(180 / (10 * math.sqrt(2)), abs=1e-3)


def pair_row(pid, first, second):
    """A prompt with two responses by the models named (an empty name: no model)."""
    return {
        "id": pid,
        "prompt": f"Question {pid}?",
        "candidates": [
            {"id": f"{pid}-a", "text": f"First answer to {pid}", "model": first},
            {"id": f"{pid}-b", "text": f"Second answer to {pid}", "model": second},
        ],
    }


def doubts(project):
    rows = Comparison.objects.filter(project=project).select_related("prompt")
    return {row.prompt.external_id: row.pair_doubt for row in rows}


# z: m1-m2 1.41 (level 2, undecided), m2-m3 2.12 (level 4, decided), m1-m3 3.54 (level 7,
# settled).
BOARD = [entry("m1", 1200, 19.6), entry("m2", 1180, 19.6), entry("m3", 1150, 19.6)]


def test_the_levels_go_onto_the_open_comparisons_of_each_pair(project, import_rows):
    project.policy = "uncertain_first"
    project.save()
    import_rows(
        pair_row("p12", "m1", "m2"),
        pair_row("p21", "m2", "m1"),  # the same pair, the other way round
        pair_row("p13", "m3", "m1"),
        pair_row("p23", "m2", "m3"),
        pair_row("p14", "m1", "m4"),  # m4 is not on the board: level 0
        pair_row("p1x", "m1", ""),  # no model: level 0
        pair_row("done", "m1", "m3"),  # complete: left as it is
    )
    Comparison.objects.filter(prompt__external_id="done").update(complete=True)
    update = pair_doubt_update(project, BOARD)
    assert doubts(project) == {
        "p12": 2,
        "p21": 2,
        "p13": 7,
        "p23": 4,
        "p14": 0,
        "p1x": 0,
        "done": 0,
    }
    assert update.bands == {"undecided": 1, "decided": 1, "settled": 1}
    assert update.changed == 4
    # Nothing moved: nothing written.
    assert pair_doubt_update(project, BOARD).changed == 0
    # m3 gone from the board (a fit without it): its pairs are back at 0.
    assert pair_doubt_update(project, BOARD[:2]).changed == 2
    assert doubts(project) == {
        "p12": 2,
        "p21": 2,
        "p13": 0,
        "p23": 0,
        "p14": 0,
        "p1x": 0,
        "done": 0,
    }


def test_a_refresh_writes_at_most_the_limit_the_least_settled_first(
    project, import_rows, monkeypatch
):
    monkeypatch.setattr(pair_doubt, "WRITE_LIMIT", 2)
    project.policy = "uncertain_first"
    project.save()
    import_rows(
        pair_row("p13", "m3", "m1"),  # level 7
        pair_row("p23", "m2", "m3"),  # level 4
        pair_row("p12", "m1", "m2"),  # level 2
        pair_row("q12", "m2", "m1"),  # level 2
    )
    first = pair_doubt_update(project, BOARD)
    assert (first.changed, first.pending) == (2, True)
    assert doubts(project) == {"p12": 2, "q12": 2, "p13": 0, "p23": 0}
    second = pair_doubt_update(project, BOARD)
    assert (second.changed, second.pending) == (2, True)
    assert doubts(project) == {"p12": 2, "q12": 2, "p13": 7, "p23": 4}
    third = pair_doubt_update(project, BOARD)
    assert (third.changed, third.pending) == (0, False)


def test_another_policy_is_left_alone(project, import_rows):
    import_rows(pair_row("p13", "m1", "m3"))
    assert pair_doubt_update(project, BOARD) is None  # breadth first
    assert doubts(project) == {"p13": 0}


def test_uncertain_first_serves_an_undecided_pair_before_a_split_comparison(
    project, annotators, import_rows
):
    """The level comes before the split: a 1-1 comparison of a settled pair waits behind an
    untouched comparison of a less settled one; among equal levels the split still leads."""
    project.policy, project.overlap = "uncertain_first", 5
    project.save()
    import_rows(pair_row("settled", "m1", "m3"), pair_row("open", "m1", "m2"))
    first, second, third = annotators
    settled = Comparison.objects.get(prompt__external_id="settled")
    Comparison.objects.filter(pk=settled.pk).update(split=0, votes_a=1, votes_b=1)
    # Without a fit every doubt is 0: the 1-1 comparison first.
    lease = assignment_next(project=project, annotator=first)
    assert lease is not None and lease.comparison_id == settled.pk
    lease.delete()
    Comparison.objects.filter(pk=settled.pk).update(lease_count=0)
    pair_doubt_update(project, BOARD)
    lease = assignment_next(project=project, annotator=second)
    assert lease is not None and lease.comparison.prompt.external_id == "open"
    lease = assignment_next(project=project, annotator=third)
    assert lease is not None and lease.comparison.prompt.external_id == "open"
    # Once the undecided pair's comparisons are full, the settled pair's still get their votes.
    Comparison.objects.filter(prompt__external_id="open").update(complete=True)
    lease = assignment_next(project=project, annotator=first)
    assert lease is not None and lease.comparison_id == settled.pk


def test_the_dashboards_refresh_writes_the_levels_of_the_crowd_fit(project, make_user, import_rows):
    """The figures' crowd leaderboard, fitted on real votes: m1 beats m3 every time and m2 and
    m3 split, so the open comparisons of m1 against m3 rank behind those of m2 against m3."""
    project.policy, project.overlap, project.allow_tie = "uncertain_first", 3, True
    project.save()
    crowd = [make_user(f"voter{i}") for i in range(6)]
    for user in crowd:
        membership_add(project=project, user=user, role="annotator")
    rows = [pair_row(f"a{i}", "m1", "m3") for i in range(12)]
    rows += [pair_row(f"b{i}", "m2", "m3") for i in range(12)]
    rows += [pair_row(f"c{i}", "m1", "m2") for i in range(4)]
    import_rows(*rows)
    # Breadth first while the votes go in, so that every pair gets some.
    project.policy = "breadth_first"
    project.save()
    for n in range(40):
        annotator = crowd[n % len(crowd)]
        lease = assignment_next(project=project, annotator=annotator)
        assert lease is not None
        models = {lease.left.model, lease.right.model}
        winner = "m1" if "m1" in models else ("m2" if n % 2 else "m3")
        choice = "left" if lease.left.model == winner else "right"
        judgment_submit(assignment_id=lease.pk, annotator=annotator, choice=choice)
    project.policy = "uncertain_first"
    project.save()
    cache.clear()
    figures = figures_refresh(project)
    assert figures is not None
    board = figures["models"]["crowd_leaderboard"]["models"]
    zs = pair_zs(board)
    assert level_of(zs["m1", "m3"]) > level_of(zs["m2", "m3"])
    assert band_of(zs["m2", "m3"]) == "undecided"
    expected = {
        c.prompt.external_id: level_of(zs[c.candidate_a.model, c.candidate_b.model])
        for c in Comparison.objects.filter(complete=False).select_related(
            "prompt", "candidate_a", "candidate_b"
        )
    }
    assert {k: v for k, v in doubts(project).items() if k in expected} == expected
    assert figures["pair_doubt"]["pairs"] == {
        band: sum(band_of(z) == band for (a, b), z in zs.items() if a < b)
        for band in ("undecided", "decided", "settled")
    }
    shown = figures["html"]
    assert 'data-testid="pair-doubt"' in shown
    assert f"{figures['pair_doubt']['pairs']['undecided']} undecided" in shown
    # The next lease is an undecided pair's.
    newcomer = make_user("member")
    membership_add(project=project, user=newcomer, role="annotator")
    lease = assignment_next(project=project, annotator=newcomer)
    lowest = min(doubts(project)[c] for c in expected)
    assert lease is not None and lease.comparison.pair_doubt == lowest


def test_the_refresh_of_another_policy_writes_nothing(project, import_rows):
    import_rows(pair_row("p13", "m1", "m3"))
    cache.clear()
    figures = figures_refresh(project)
    assert figures is not None and figures["pair_doubt"] is None
    assert "pair-doubt" not in figures["html"]
