"""Transitivity checks (apps/agreement/transitivity.py): triads and cycles by hand, the Fisher
test and its flag firing and not, a simulation with a planted random clicker, and /stats/."""

import math
import random

import pytest
from scipy.stats import hypergeom

from apps.agreement.stats import Vote, VoteColumns, project_stats
from apps.agreement.transitivity import (
    MIN_TRIADS,
    p_cycles_above_others,
    random_clicker_min_triads,
    transitivity,
    transitivity_tests,
    triad_counts,
)
from apps.dashboard.outliers import outlier_flags
from apps.projects.selectors import pseudonyms_for
from tests.agreement.test_stats import judged, stats  # noqa: F401 (a fixture)


def v(annotator, prompt, winner, loser, *, comparison=None, option=None, is_gold=False):
    """`annotator` judged candidate `winner` better than `loser` of `prompt` (candidate A is the
    smaller id); `option` overrides (a tie, both bad)."""
    a, b = min(winner, loser), max(winner, loser)
    return Vote(
        comparison=comparison if comparison is not None else a * 10_000 + b,
        annotator=annotator,
        option=option or ("a" if winner == a else "b"),
        side="left" if (option or "a") in ("a", "b") else None,
        strength=None,
        model_a=f"m{a % 10}",  # candidates are numbered prompt * 10 + model
        model_b=f"m{b % 10}",
        is_gold=is_gold,
        gold_correct=None,
        duration_ms=None,
        prompt=prompt,
        candidate_a=a,
        candidate_b=b,
    )


def counts(votes):
    columns = VoteColumns.of(votes)
    triads, cycles = triad_counts(columns)
    return {name: (int(triads[i]), int(cycles[i])) for i, name in enumerate(columns.names)}


def test_triads_and_cycles_by_hand():
    votes = [
        # cyc: 1 > 2, 2 > 3, 3 > 1, a cycle.
        v("cyc", 1, 1, 2), v("cyc", 1, 2, 3), v("cyc", 1, 3, 1),
        # tra: 1 > 2, 2 > 3, 1 > 3, transitive; and the reverse cycle on prompt 2.
        v("tra", 1, 1, 2), v("tra", 1, 2, 3), v("tra", 1, 1, 3),
        v("tra", 2, 2, 1), v("tra", 2, 3, 2), v("tra", 2, 1, 3),
        # two: only two pairs judged decisively, the third a tie: no triad.
        v("two", 1, 1, 2), v("two", 1, 2, 3), v("two", 1, 1, 3, option="tie"),
        # all: four candidates, all six pairs, 1 > 2 > 3 > 4 but 4 > 1: of the four triads,
        # {1,2,4} (1>2, 2>4, 4>1) and {1,3,4} (1>3, 3>4, 4>1) go round; {1,2,3}, {2,3,4} not.
        v("all", 1, 1, 2), v("all", 1, 1, 3), v("all", 1, 4, 1),
        v("all", 1, 2, 3), v("all", 1, 2, 4), v("all", 1, 3, 4),
        # flip: judged 1-2 twice, both ways: that pair has no order, so no triad.
        v("flip", 1, 1, 2), v("flip", 1, 2, 1, comparison=1), v("flip", 1, 2, 3),
        v("flip", 1, 3, 1),
        # gold: a cycle on gold comparisons does not count.
        v("gold", 1, 1, 2, is_gold=True), v("gold", 1, 2, 3, is_gold=True),
        v("gold", 1, 3, 1, is_gold=True),
        # mix: three pairs across two prompts are no triad.
        v("mix", 1, 1, 2), v("mix", 1, 2, 3), v("mix", 2, 3, 1),
    ]  # fmt: skip
    assert counts(votes) == {
        "all": (4, 2),
        "cyc": (1, 1),
        "flip": (0, 0),
        "gold": (0, 0),
        "mix": (0, 0),
        "tra": (2, 1),
        "two": (0, 0),
    }


def test_votes_without_a_prompt_count_nothing():
    votes = [v("x", 1, 1, 2), v("x", 1, 2, 3), v("x", 1, 3, 1)]
    votes = [Vote(**{**{f: getattr(x, f) for f in Vote.__slots__}, "prompt": None}) for x in votes]
    assert counts(votes) == {"x": (0, 0)}


def test_the_fisher_test_by_hand():
    # 2 cycles of 2 triads against the others' 0 of 2: of the C(4, 2) = 6 ways to draw 2 of the
    # 4 triads, one takes both cycles: p = 1/6.
    assert p_cycles_above_others(2, 2, 0, 2) == pytest.approx(1 / 6)
    # No cycle: p = 1.
    assert p_cycles_above_others(0, 10, 5, 50) == pytest.approx(1.0)
    assert p_cycles_above_others(3, 10, 5, 50) == pytest.approx(hypergeom.sf(2, 60, 8, 10))


def test_the_flag_fires_on_many_cycles_and_not_on_few_triads():
    # Annotator 0: 8 cycles of 10 triads; 1 and 2: 1 of 50 each; 3: 4 cycles of 4 triads,
    # below MIN_TRIADS, reported but not tested.
    tests = transitivity_tests([10, 50, 50, 4], [8, 1, 1, 4])
    first, second, _, few = tests
    assert first is not None and second is not None and few is not None
    assert first["test"]["flagged"] and first["cycle_rate"] == 0.8
    # Against the others' 6 cycles of 104 triads.
    assert first["others_cycle_rate"] == round(6 / 104, 4)
    assert first["test"]["p_value"] == pytest.approx(hypergeom.sf(7, 114, 14, 10), rel=1e-3)
    assert first["test"]["correction"] == "Holm over 3 tests"
    assert not second["test"]["flagged"]
    assert few["test"] is None and few["min_triads"] == MIN_TRIADS == 5
    assert (few["triads"], few["cycles"]) == (4, 4)
    assert transitivity_tests([0, 3], [0, 1])[0] is None


def test_the_evidence_a_random_clicker_needs():
    # Against others with 5 cycles of 100 triads, at alpha 0.01: flagged from n on (a quarter
    # of n, rounded up, cycles), not at n - 1.
    n = random_clicker_min_triads(5, 100, 0.01)
    assert n is not None and n >= MIN_TRIADS

    def p(m):
        return p_cycles_above_others(math.ceil(m / 4), m, 5, 100)

    assert all(p(m) < 0.01 for m in range(n, n + 20))
    assert p(n - 1) >= 0.01
    # Others who cycle as often as a clicker: never.
    assert random_clicker_min_triads(25, 100, 0.01) is None


def simulate(seed, prompts=200):
    """Eight honest annotators choosing by Bradley-Terry among three of eight models per prompt,
    and one random clicker; each judges every pair of every prompt."""
    rng = random.Random(seed)
    strength = [-3 + 6 * i / 7 for i in range(8)]  # neighbours 0.86 apart
    people = [f"honest-{i}" for i in range(8)] + ["random"]
    votes = []
    for prompt in range(prompts):
        models = rng.sample(range(8), 3)
        for person in people:
            for x, y in ((0, 1), (1, 2), (0, 2)):
                a, b = models[x], models[y]
                if person == "random":
                    a_wins = rng.random() < 0.5
                else:
                    a_wins = rng.random() < 1 / (1 + math.exp(strength[b] - strength[a]))
                # Candidates are numbered per prompt; model i's candidate is prompt * 10 + i.
                win, lose = (a, b) if a_wins else (b, a)
                votes.append(v(person, prompt, prompt * 10 + win, prompt * 10 + lose))
    return votes


@pytest.mark.parametrize("seed", range(3))
def test_a_planted_random_clicker_is_intransitive_and_the_honest_are_not(seed):
    found = transitivity(VoteColumns.of(simulate(seed)))
    clicker = found["random"]
    assert clicker is not None and clicker["triads"] == 200
    assert clicker["test"]["flagged"], clicker
    assert 0.15 < clicker["cycle_rate"] < 0.35
    for name, entry in found.items():
        if name.startswith("honest"):
            assert entry is not None and not entry["test"]["flagged"], (name, entry)


def test_the_report_and_the_dashboards_flag():
    report = project_stats(simulate(0))
    assert report["transitivity"]["triads"] == 9 * 200
    assert "Fisher" in report["transitivity"]["meaning"]
    summary = next(s for s in report["annotators"] if s["annotator"] == "random")
    reasons = outlier_flags(
        summary, project_median_ms=None, gold_min_accuracy=0.0, gold_min_answers=10
    )
    (reason,) = [flag["reason"] for flag in reasons if flag["flag"] == "intransitive"]
    entry = summary["transitivity"]
    assert reason.startswith(f"{entry['cycles']} of their 200 triads go round in a circle")
    honest = next(s for s in report["annotators"] if s["annotator"] == "honest-0")
    assert "intransitive" not in [
        flag["flag"]
        for flag in outlier_flags(
            honest, project_median_ms=None, gold_min_accuracy=0.0, gold_min_answers=10
        )
    ]


def test_stats_reports_each_annotators_triads(api, bob, judged, annotators):  # noqa: F811
    # The fixture's prompt p-1 has three candidates (models 1, 2, 3). ann judged 1 > 2, 1 > 3,
    # 3 > 2: one transitive triad. ben tied one pair, cat said both bad to one: no triad.
    names = pseudonyms_for(judged)
    report = stats(api, bob)
    by_name = {entry["annotator"]: entry for entry in report["annotators"]}
    ann, ben, cat = (by_name[names[user.pk]] for user in annotators)
    assert ann["transitivity"] == {
        "triads": 1,
        "cycles": 0,
        "cycle_rate": 0.0,
        "others_cycle_rate": None,
        "min_triads": 5,
        "test": None,
    }
    assert ben["transitivity"] is None and cat["transitivity"] is None
    assert (report["transitivity"]["triads"], report["transitivity"]["cycles"]) == (1, 0)


def reference_counts(votes):
    """Triads and cycles by brute force over every annotator, prompt and three candidates."""
    order = {}
    for vote in votes:
        if vote.is_gold or vote.option not in ("a", "b"):
            continue
        a, b = vote.candidate_a, vote.candidate_b
        winner = a if vote.option == "a" else b
        order.setdefault((vote.annotator, vote.prompt, min(a, b), max(a, b)), set()).add(
            winner == min(a, b)
        )
    found = {}
    for annotator in {v.annotator for v in votes}:
        triads = cycles = 0
        for prompt in {v.prompt for v in votes}:
            people = {k[2:]: w for k, w in order.items() if k[:2] == (annotator, prompt)}
            nodes = sorted({c for pair in people for c in pair})
            for i, x in enumerate(nodes):
                for j, y in enumerate(nodes[i + 1 :], i + 1):
                    for z in nodes[j + 1 :]:
                        ways = [people.get(pair, set()) for pair in ((x, y), (y, z), (x, z))]
                        if all(len(w) == 1 for w in ways):
                            triads += 1
                            xy, yz, xz = (next(iter(w)) for w in ways)
                            cycles += int(xy == yz != xz)
        found[annotator] = (triads, cycles)
    return found


@pytest.mark.parametrize("seed", range(5))
def test_the_counts_match_a_brute_force_reference(seed):
    # Random votes, repeats and ties included, over prompts of 2 to 5 candidates.
    rng = random.Random(seed)
    votes = []
    for k in range(400):
        prompt = rng.randrange(15)
        size = 2 + prompt % 4
        a, b = rng.sample(range(size), 2)
        winner, loser = prompt * 10 + a, prompt * 10 + b
        option = rng.choice([None, None, None, "tie"])
        votes.append(v(f"p{rng.randrange(3)}", prompt, winner, loser, comparison=k, option=option))
    expected = reference_counts(votes)
    assert counts(votes) == expected
    assert sum(t for t, _ in expected.values()) >= 5 and sum(c for _, c in expected.values())
