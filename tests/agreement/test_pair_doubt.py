"""The model-pair doubt uncertain_first spends its votes by (apps.agreement.pair_doubt): the
levels on hand-computed cases, their writing onto the comparisons, the queue's order, and the
dashboard's refresh that writes them from the real crowd fit."""

import pytest
from django.core.cache import cache

from apps.agreement.pair_doubt import (
    DECIDED,
    SETTLED,
    UNDECIDED,
    pair_doubt_update,
    pair_level,
    pair_levels,
)
from apps.batches.models import Comparison
from apps.dashboard.services import figures_refresh
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.services import membership_add


def entry(model, score, half_width):
    """A leaderboard entry whose interval gives a standard error of half_width / 1.96."""
    return {"model": model, "score": score, "ci95": [score - half_width, score + half_width]}


# Half-widths of 19.6 give each score a standard error of 10, so a difference's is 10 * sqrt(2)
# = 14.14: z = difference / 14.14.
@pytest.mark.parametrize(
    ("difference", "level"),
    [
        (0, UNDECIDED),
        (23.0, UNDECIDED),  # z 1.63: the order wrong with more than 5% probability
        (23.5, DECIDED),  # z 1.66
        (42.0, DECIDED),  # z 2.97
        (42.5, SETTLED),  # z 3.01
        (400, SETTLED),
    ],
)
def test_the_level_of_two_scores_is_their_z(difference, level):
    assert pair_level(entry("a", 1000, 19.6), entry("b", 1000 + difference, 19.6)) == level
    assert pair_level(entry("b", 1000 + difference, 19.6), entry("a", 1000, 19.6)) == level


def test_unequal_intervals_add_in_quadrature():
    # Standard errors 30 and 40: the difference's is 50, so 100 apart is z 2 (decided) and 160
    # apart z 3.2 (settled).
    assert pair_level(entry("a", 1000, 30 * 1.96), entry("b", 1100, 40 * 1.96)) == DECIDED
    assert pair_level(entry("a", 1000, 30 * 1.96), entry("b", 1160, 40 * 1.96)) == SETTLED


def test_intervals_of_no_width():
    assert pair_level(entry("a", 1000, 0), entry("b", 1001, 0)) == SETTLED
    assert pair_level(entry("a", 1000, 0), entry("b", 1000, 0)) == UNDECIDED


def test_every_pair_in_both_orders_and_entries_without_an_interval_left_out():
    board = [
        entry("m1", 1100, 19.6),
        entry("m2", 1080, 19.6),
        entry("m3", 900, 19.6),
        {"model": "m4", "score": None, "ci95": None},
    ]
    levels = pair_levels(board)
    assert levels == {
        ("m1", "m2"): UNDECIDED,
        ("m2", "m1"): UNDECIDED,
        ("m1", "m3"): SETTLED,
        ("m3", "m1"): SETTLED,
        ("m2", "m3"): SETTLED,
        ("m3", "m2"): SETTLED,
    }


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


BOARD = [entry("m1", 1200, 19.6), entry("m2", 1180, 19.6), entry("m3", 1150, 19.6)]


def test_the_levels_go_onto_the_open_comparisons_of_each_pair(project, import_rows):
    project.policy = "uncertain_first"
    project.save()
    import_rows(
        pair_row("p12", "m1", "m2"),  # 20 apart: undecided
        pair_row("p21", "m2", "m1"),  # the same pair, the other way round
        pair_row("p13", "m3", "m1"),  # 50 apart: settled
        pair_row("p23", "m2", "m3"),  # 30 apart: decided
        pair_row("p14", "m1", "m4"),  # m4 is not on the board: undecided
        pair_row("p1x", "m1", ""),  # no model: undecided
        pair_row("done", "m1", "m3"),  # settled, but complete: left as it is
    )
    Comparison.objects.filter(prompt__external_id="done").update(complete=True)
    update = pair_doubt_update(project, BOARD)
    assert doubts(project) == {
        "p12": UNDECIDED,
        "p21": UNDECIDED,
        "p13": SETTLED,
        "p23": DECIDED,
        "p14": UNDECIDED,
        "p1x": UNDECIDED,
        "done": UNDECIDED,
    }
    assert update.levels == {UNDECIDED: 1, DECIDED: 1, SETTLED: 1}
    assert update.changed == 2
    # Nothing moved: nothing written.
    assert pair_doubt_update(project, BOARD).changed == 0
    # m3 gone from the board (a fit without it): its pairs are undecided again.
    assert pair_doubt_update(project, BOARD[:2]).changed == 2
    assert set(doubts(project).values()) == {UNDECIDED}


def test_another_policy_is_left_alone(project, import_rows):
    import_rows(pair_row("p13", "m1", "m3"))
    update = pair_doubt_update(project, BOARD)  # breadth first
    assert update.changed == 0 and update.levels == {}
    assert doubts(project) == {"p13": UNDECIDED}


def test_uncertain_first_serves_an_undecided_pair_before_a_split_comparison(
    project, annotators, import_rows
):
    """The doubt comes before the split: a 1-1 comparison of a settled pair waits behind an
    untouched comparison of an undecided one; among equal doubts the split still leads."""
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
    levels = pair_levels(board)
    assert levels["m1", "m3"] > levels["m2", "m3"] == UNDECIDED
    expected = {
        c.prompt.external_id: levels[c.candidate_a.model, c.candidate_b.model]
        for c in Comparison.objects.filter(complete=False).select_related(
            "prompt", "candidate_a", "candidate_b"
        )
    }
    assert {k: v for k, v in doubts(project).items() if k in expected} == expected
    assert figures["pair_doubt"]["pairs"] == {
        name: sum(found == level for found in levels.values()) // 2
        for name, level in (("undecided", UNDECIDED), ("decided", DECIDED), ("settled", SETTLED))
    }
    shown = figures["html"]
    assert 'data-testid="pair-doubt"' in shown
    assert f"{figures['pair_doubt']['pairs']['undecided']} undecided" in shown
    # The next lease is an undecided pair's.
    newcomer = make_user("member")
    membership_add(project=project, user=newcomer, role="annotator")
    lease = assignment_next(project=project, annotator=newcomer)
    assert lease is not None and lease.comparison.pair_doubt == UNDECIDED


def test_the_refresh_of_another_policy_writes_nothing(project, import_rows):
    import_rows(pair_row("p13", "m1", "m3"))
    cache.clear()
    figures = figures_refresh(project)
    assert figures is not None and figures["pair_doubt"] is None
    assert "pair-doubt" not in figures["html"]
