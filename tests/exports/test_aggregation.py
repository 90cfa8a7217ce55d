"""Aggregation modes, filters and the new row fields of the pairwise exports, on tiny projects
checked number by number.

Votes are written per candidate: "a" (the prompt's first candidate, c1), "b", "tie", "both_bad";
annotators vote in the order ann, ben, cat. Graded plans give each vote's strength toward A.
"""

import json
from datetime import UTC, datetime, timedelta
from math import exp, log
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.batches.models import Comparison
from apps.exports.formats import export_rows
from apps.exports.options import Options
from apps.exports.selectors import split_of
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line
from tests.exports.test_exports import URL, rows

datasets = pytest.importorskip("datasets")


def judge(project, annotators, plan, *, criteria_plan=None) -> dict[str, Comparison]:
    """Each annotator in turn judges all they are served; `plan[prompt][i]` is annotator i's vote:
    'a', 'b', 'tie', 'both_bad', an int (a graded strength toward A) or None (skip the vote).
    `criteria_plan[prompt][i]` is annotator i's answer for the criterion `honesty`."""
    from apps.judging.queue import assignment_skip

    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            comparison = lease.comparison
            pid = comparison.prompt.external_id
            wanted = plan[pid][index] if index < len(plan[pid]) else None
            if wanted is None:
                assignment_skip(assignment_id=lease.pk, annotator=user, reason="other", note="-")
                continue
            left_is_a = lease.left_id == comparison.candidate_a_id

            def on_screen(option, left_is_a=left_is_a):
                if option in ("a", "b"):
                    return "left" if (option == "a") == left_is_a else "right"
                return option

            kwargs: dict[str, Any] = {}
            if criteria_plan is not None:
                kwargs["criteria"] = {"honesty": on_screen(criteria_plan[pid][index])}
            if isinstance(wanted, int):
                kwargs["strength"] = -wanted if left_is_a else wanted
            else:
                kwargs["choice"] = on_screen(wanted)
            judgment_submit(assignment_id=lease.pk, annotator=user, **kwargs)
    return {
        c.prompt.external_id: c
        for c in Comparison.objects.select_related("prompt", "candidate_a", "candidate_b")
    }


def export(api, bob, format="trl", **params):
    return rows(api(bob).get(URL, {"format": format, **params}))


def raw(api, bob, **params) -> bytes:
    response = api(bob).get(URL, params)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


# --- unanimous, include_gold, chosen_position, guideline_versions ------------------------------

PLAN = {
    "split": ["a", "a", "b"],
    "all-b": ["b", "b", "b"],
    "ties": ["tie", "tie", "tie"],
    "bad": ["both_bad", "both_bad", "both_bad"],
    "gold": ["a", "a", "a"],
}


@pytest.fixture
def plain(project, annotators, import_rows):
    import_rows(*(prompt_line(pid) for pid in PLAN))
    by_prompt = judge(project, annotators, PLAN)
    Comparison.objects.filter(prompt__external_id="gold").update(is_gold=True, gold_answer="a")
    return by_prompt


def test_unanimous_keeps_only_comparisons_where_every_vote_names_one_candidate(api, bob, plain):
    assert [r["prompt_id"] for r in export(api, bob)] == ["split", "all-b"]
    (row,) = export(api, bob, aggregate="unanimous")
    assert (row["prompt_id"], row["chosen_id"], row["votes"]) == (
        "all-b",
        "c2",
        {"chosen": 3, "rejected": 0, "tie": 0, "both_bad": 0},
    )
    # label_confidence is reliability's alone: no all-null column under the others.
    assert row["agreement"] == 1.0
    assert "label_confidence" not in row
    # A unanimous both-bad gives kto's false rows on request; a unanimous tie gives nothing.
    kto = export(api, bob, "kto", aggregate="unanimous", both_bad="include")
    assert [(r["prompt_id"], r["candidate_id"], r["label"]) for r in kto] == [
        ("all-b", "c2", True),
        ("all-b", "c1", False),
        ("bad", "c1", False),
        ("bad", "c2", False),
    ]
    assert export(api, bob, aggregate="unanimous", min_votes="4") == []


def test_gold_comparisons_are_left_out_unless_asked_for(api, bob, plain):
    assert "gold" not in [r["prompt_id"] for r in export(api, bob, include_gold="false")]
    with_gold = export(api, bob, include_gold="true")
    assert [r["prompt_id"] for r in with_gold] == ["split", "all-b", "gold"]
    unanimous = export(api, bob, aggregate="unanimous", include_gold="true")
    assert [r["prompt_id"] for r in unanimous] == ["all-b", "gold"]
    assert len(export(api, bob, "judgments", include_gold="true")) == 15
    assert len(export(api, bob, "judgments")) == 12
    assert len(export(api, bob, "arena", include_gold="true")) == 15


def test_rows_carry_the_chosen_position_and_the_guideline_versions(api, bob, annotators, plain):
    """all-b (B won 3-0): B shown on the left to ann and ben, on the right to cat: 2/3.
    split (A won 2-1): A on the left for ann only, of ann and ben: 1/2 (cat's vote for B does not
    count). Versions: ann 2, ben none recorded, cat 1."""
    ann, ben, cat = annotators
    sides = {"all-b": {ann: "b", ben: "b", cat: "a"}, "split": {ann: "a", ben: "b", cat: "a"}}
    for pid, left_for in sides.items():
        comparison = plain[pid]
        for user, side in left_for.items():
            left, right = (
                (comparison.candidate_a, comparison.candidate_b)
                if side == "a"
                else (comparison.candidate_b, comparison.candidate_a)
            )
            Judgment.objects.filter(comparison=comparison, annotator=user).update(
                left=left, right=right
            )
    Judgment.objects.filter(annotator=ann).update(guideline_version=2)
    Judgment.objects.filter(annotator=ben).update(guideline_version=None)
    split, all_b = export(api, bob)
    assert (split["chosen_position"], all_b["chosen_position"]) == (0.5, 0.6667)
    assert split["guideline_versions"] == all_b["guideline_versions"] == [1, 2]
    kto = export(api, bob, "kto")
    assert [r["chosen_position"] for r in kto] == [0.5, 0.5, 0.6667, 0.6667]
    assert kto[0]["guideline_versions"] == [1, 2]
    for format in ("trl-implicit", "hh-rlhf"):
        assert [r["chosen_position"] for r in export(api, bob, format)] == [0.5, 0.6667]


# --- mean_strength ------------------------------------------------------------------------------

GRADED = {
    "g1": [3, -1, -1],  # mean +1/3: A, though B has the majority
    "g2": [1, -1, 0],  # mean 0: left out
    "g3": [-2, -2, 1],  # mean -1: B
    "g4": ["both_bad", "both_bad", 2],  # one graded vote, +2: A
    "g5": ["both_bad", "both_bad", "both_bad"],  # no graded vote: left out
}


@pytest.fixture
def graded(project, annotators, import_rows):
    project.scheme = "graded"
    project.save()
    import_rows(*(prompt_line(pid) for pid in GRADED))
    return judge(project, annotators, GRADED)


def test_mean_strength_takes_the_sign_of_the_mean_graded_strength(api, bob, graded):
    exported = export(api, bob, aggregate="mean_strength")
    assert [(r["prompt_id"], r["chosen_id"]) for r in exported] == [
        ("g1", "c1"),
        ("g3", "c2"),
        ("g4", "c1"),
    ]
    g1, g3, g4 = exported
    assert g1["votes"] == {"chosen": 1, "rejected": 2, "tie": 0, "both_bad": 0}
    assert (g1["agreement"], g1["strength_mean"], g1["margin"]) == (0.3333, 0.3333, 0.1111)
    assert g3["votes"] == {"chosen": 2, "rejected": 1, "tie": 0, "both_bad": 0}
    assert (g3["strength_mean"], g3["margin"]) == (1.0, 0.3333)
    assert g4["votes"] == {"chosen": 1, "rejected": 0, "tie": 0, "both_bad": 2}
    assert (g4["agreement"], g4["strength_mean"], g4["margin"]) == (0.3333, 2.0, 0.6667)
    assert all("label_confidence" not in r for r in exported)
    # The majority reads the same votes differently.
    assert [(r["prompt_id"], r["chosen_id"]) for r in export(api, bob)] == [
        ("g1", "c2"),
        ("g3", "c2"),
    ]


# --- reliability on a criterion (Dawid-Skene; the overall choice: test_reliability.py) ---------

# ann always gives the truth; ben errs on r1-r6, cat on r7-r12, and both on r13, where their
# two votes outvote ann's. Truth alternates: r1 a, r2 b, ...
RELIABILITY: dict[str, list[str]] = {}
for i in range(1, 21):
    truth = "a" if i % 2 else "b"
    wrong = "b" if truth == "a" else "a"
    RELIABILITY[f"r{i:02d}"] = [
        truth,
        wrong if i <= 6 or i == 13 else truth,
        wrong if 7 <= i <= 13 else truth,
    ]


def dawid_skene_by_hand(votes: dict[str, list[str]]) -> dict[str, tuple[str, float]]:
    """The same model, written plainly with loops: truths a and b, answers a, b, tie and both
    bad; majority start, 0.1 pseudo-votes per cell, stop when no parameter moves by 1e-6."""
    truths, answers = ["a", "b"], ["a", "b", "tie", "both_bad"]
    items = sorted(votes)
    t: dict[str, list[float]] = {}
    for item in items:
        counts = [votes[item].count(k) for k in truths]
        most = [float(c == max(counts)) for c in counts]
        t[item] = [x / sum(most) for x in most]
    prior = [0.5, 0.5]
    conf = {j: [[0.25] * 4, [0.25] * 4] for j in range(3)}
    for _ in range(500):
        new_prior = [(sum(t[i][k] for i in items) + 0.1) / (len(items) + 0.2) for k in (0, 1)]
        new_conf: dict[int, list[list[float]]] = {}
        for j in range(3):
            new_conf[j] = []
            for k in (0, 1):
                said = [sum(t[i][k] for i in items if votes[i][j] == answer) for answer in answers]
                new_conf[j].append([(s + 0.1) / (sum(said) + 0.4) for s in said])
        moved = max(
            [abs(a - b) for a, b in zip(new_prior, prior, strict=True)]
            + [
                abs(new_conf[j][k][l_] - conf[j][k][l_])
                for j in range(3)
                for k in (0, 1)
                for l_ in range(4)
            ]
        )
        prior, conf = new_prior, new_conf
        for i in items:
            logs = [
                log(prior[k]) + sum(log(conf[j][k][answers.index(votes[i][j])]) for j in range(3))
                for k in (0, 1)
            ]
            top = max(logs)
            weights = [exp(x - top) for x in logs]
            t[i] = [w / sum(weights) for w in weights]
        if moved < 1e-6:
            break
    return {i: (truths[0] if t[i][0] > t[i][1] else truths[1], max(t[i])) for i in items}


@pytest.fixture
def reliability_project(project, annotators, import_rows):
    """RELIABILITY's votes as the answers for the criterion `honesty` (which Dawid-Skene
    labels); the overall choice is "a" everywhere."""
    project.criteria = [{"name": "honesty", "description": ""}]
    project.save()
    import_rows(*(prompt_line(pid) for pid in RELIABILITY))
    overall = {pid: ["a", "a", "a"] for pid in RELIABILITY}
    return judge(project, annotators, overall, criteria_plan=RELIABILITY)


def test_reliability_lets_a_reliable_annotator_outweigh_two_unreliable_ones(
    api, bob, reliability_project
):
    majority = {r["prompt_id"]: r["chosen_id"] for r in export(api, bob, criterion="honesty")}
    exported = export(api, bob, aggregate="reliability", criterion="honesty")
    by_prompt = {r["prompt_id"]: r for r in exported}
    assert len(exported) == 20
    # r13: ben and cat outvote ann under the majority; Dawid-Skene sides with ann.
    assert majority["r13"] == "c2"
    assert by_prompt["r13"]["chosen_id"] == "c1"
    assert by_prompt["r13"]["votes"] == {"chosen": 1, "rejected": 2, "tie": 0, "both_bad": 0}
    assert by_prompt["r13"]["label_confidence"] == 0.796
    # Everywhere else ann is in the majority, and both agree.
    assert all(by_prompt[p]["chosen_id"] == majority[p] for p in majority if p != "r13")
    hand = dawid_skene_by_hand(RELIABILITY)
    for pid, row in by_prompt.items():
        winner, confidence = hand[pid]
        assert row["chosen_id"] == ("c1" if winner == "a" else "c2"), pid
        assert row["label_confidence"] == round(confidence, 4), pid
    # Unanimous items are the surest, those where ann had one ally less so.
    assert by_prompt["r15"]["label_confidence"] == 0.9793
    assert by_prompt["r01"]["label_confidence"] == 0.9314
    # Deterministic: the same bytes every time, and from the command.
    first = raw(api, bob, format="trl", aggregate="reliability", criterion="honesty")
    assert raw(api, bob, format="trl", aggregate="reliability", criterion="honesty") == first


def test_reliability_leaves_ties_in_posterior_and_votes_for_neither_out(
    api, bob, project, annotators, import_rows
):
    """On a criterion (Dawid-Skene), two annotators who always disagree are indistinguishable:
    every posterior is a tie. And a comparison with no vote for either candidate has nothing
    pointing to one, under the crowd model too (which may label the splits: its annotators'
    side habits differ)."""
    plan = {f"t{i}": (["a", "b"] if i % 2 else ["b", "a"]) for i in range(4)}
    plan["neither"] = ["tie", "both_bad", "tie"]
    project.criteria = [{"name": "honesty", "description": ""}]
    project.save()
    import_rows(*(prompt_line(pid) for pid in plan))
    judge(project, annotators, plan, criteria_plan=plan)
    assert export(api, bob, aggregate="majority") == []
    honesty = {"aggregate": "reliability", "criterion": "honesty"}
    assert export(api, bob, **honesty) == []
    assert export(api, bob, "kto", both_bad="include", **honesty) == []
    overall = export(api, bob, aggregate="reliability")
    assert "neither" not in {row["prompt_id"] for row in overall}
    assert all(0.5 <= row["label_confidence"] <= 1 for row in overall)


# --- filters ------------------------------------------------------------------------------------


def test_models_keeps_comparisons_between_the_named_models(
    api, bob, project, annotators, import_rows
):
    import_rows(prompt_line("p", n=3))  # c1/model-1, c2/model-2, c3/model-3: three pairs
    judge(project, annotators, {"p": ["a", "a", "a"]})
    exported = export(api, bob, models="model-1, model-3")
    assert [(r["chosen_model"], r["rejected_model"]) for r in exported] == [("model-1", "model-3")]
    arena = export(api, bob, "arena", models="model-3,model-1")
    assert {(r["model_a"], r["model_b"]) for r in arena} == {("model-1", "model-3")}
    assert len(arena) == 3
    assert len(export(api, bob, models="model-1,model-2,model-3")) == 3
    assert export(api, bob, models="model-2") == []


def test_since_pulls_what_changed(api, bob, project, annotators, plain):
    """Every vote at noon, except cat's on `split`, a day later."""
    noon = datetime(2026, 11, 1, 12, tzinfo=UTC)
    Judgment.objects.update(created_at=noon)
    late = Judgment.objects.get(comparison=plain["split"], annotator=annotators[2])
    late.created_at = noon + timedelta(days=1)
    late.save()
    later = (noon + timedelta(hours=1)).isoformat()
    (row,) = export(api, bob, since=later)
    assert (row["prompt_id"], row["n_annotators"]) == ("split", 3)  # all its votes count
    assert len(export(api, bob, since=noon.isoformat())) == 2
    (vote,) = export(api, bob, "judgments", since=later)
    assert vote["created_at"] == late.created_at.isoformat()
    (battle,) = export(api, bob, "arena", since=later)
    assert battle["tstamp"] == late.created_at.timestamp()
    # An unencoded + arrives as a space; it is read as the + it was.
    assert len(export(api, bob, since=later.replace("+", " "))) == 1
    assert len(export(api, bob, since="2026-11-01T13:00:00Z")) == 1
    assert export(api, bob, since="2030-01-01T00:00:00+00:00") == []


@pytest.fixture
def criteria_project(project, annotators, import_rows):
    project.criteria = [{"name": "honesty", "description": "No made-up facts."}]
    project.save()
    import_rows(prompt_line("h1"), prompt_line("h2"))
    overall = {"h1": ["a", "a", "b"], "h2": ["b", "b", "b"]}
    honesty = {"h1": ["b", "b", "a"], "h2": ["tie", "a", "tie"]}
    return judge(project, annotators, overall, criteria_plan=honesty)


def test_criterion_exports_one_criterions_preferences(api, bob, annotators, criteria_project):
    assert [(r["prompt_id"], r["chosen_id"]) for r in export(api, bob)] == [
        ("h1", "c1"),
        ("h2", "c2"),
    ]
    (row,) = export(api, bob, criterion="honesty")  # h2's honesty: a tie majority
    assert (row["prompt_id"], row["chosen_id"]) == ("h1", "c2")
    assert row["votes"] == {"chosen": 2, "rejected": 1, "tie": 0, "both_bad": 0}
    # Votes judged before the criterion existed have no answer for it, and are left out.
    Judgment.objects.filter(comparison=criteria_project["h2"]).exclude(
        annotator=annotators[1]
    ).update(criteria={})
    h1, h2 = export(api, bob, criterion="honesty")
    assert (h2["prompt_id"], h2["chosen_id"], h2["n_annotators"]) == ("h2", "c1", 1)
    assert h2["votes"] == {"chosen": 1, "rejected": 0, "tie": 0, "both_bad": 0}
    assert h1 == row
    kto = export(api, bob, "kto", criterion="honesty", aggregate="unanimous")
    assert [(r["prompt_id"], r["candidate_id"], r["label"]) for r in kto] == [
        ("h2", "c1", True),
        ("h2", "c2", False),
    ]


def test_criterion_strengths_feed_mean_strength(api, bob, project, annotators, import_rows):
    project.scheme = "graded"
    project.criteria = [{"name": "honesty", "description": ""}]
    project.save()
    import_rows(prompt_line("g"))
    for user, (overall, honesty) in zip(annotators, [(3, -1), (2, -1), (-1, 3)], strict=True):
        lease = assignment_next(project=project, annotator=user)
        flip = -1 if lease.left_id == lease.comparison.candidate_a_id else 1
        judgment_submit(
            assignment_id=lease.pk,
            annotator=user,
            strength=overall * flip,
            criteria={"honesty": honesty * flip},
        )
    (overall,) = export(api, bob, aggregate="mean_strength")
    (honest,) = export(api, bob, aggregate="mean_strength", criterion="honesty")
    assert (overall["chosen_id"], overall["strength_mean"]) == ("c1", 1.3333)
    assert (honest["chosen_id"], honest["strength_mean"]) == ("c1", 0.3333)
    assert honest["votes"] == {"chosen": 1, "rejected": 2, "tie": 0, "both_bad": 0}
    (majority,) = export(api, bob, criterion="honesty")
    assert majority["chosen_id"] == "c2"


def test_judgments_and_arena_split_by_prompt_and_drop_ties_on_request(
    api, bob, project, annotators, import_rows
):
    import_rows(*(prompt_line(f"s{i}") for i in range(30)))
    project.overlap = 1
    project.save()
    judge(project, annotators, {f"s{i}": [["a", "b", "tie"][i % 3]] for i in range(30)})
    for format, key in (("judgments", "prompt_id"), ("arena", "question_id")):
        everything = [r[key] for r in export(api, bob, format)]
        train = [r[key] for r in export(api, bob, format, split="train", test_fraction="0.3")]
        test = [r[key] for r in export(api, bob, format, split="test", test_fraction="0.3")]
        assert sorted(train + test) == sorted(everything)
        assert not set(train) & set(test) and test
        assert all(split_of(project.slug, p, 0.3) == "test" for p in test)
    judgments = export(api, bob, "judgments", include_ties="false")
    assert len(judgments) == 20
    assert all(r["choice"] in ("left", "right") for r in judgments)


# --- bad parameters, the card, the command, datasets, statements ---------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"aggregate": "best"}, "aggregate"),
        ({"aggregate": ""}, "aggregate"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-01T12:00:00"}, "since"),  # no offset
        ({"criterion": "honesty"}, "criterion"),  # the project has no criteria
        ({"models": ""}, "models"),
        ({"models": " , "}, "models"),
        ({"models": "model-1,model-9"}, "models"),
        ({"include_gold": "yes"}, "include_gold"),
        ({"format": "judgments", "criterion": "honesty"}, "criterion"),
        ({"format": "judgments", "aggregate": "unanimous"}, "aggregate"),
        ({"format": "judgments", "models": "model-1"}, "models"),
        ({"format": "arena", "aggregate": "majority"}, "aggregate"),
        ({"format": "judgments", "split": "dev"}, "split"),
        ({"format": "card", "aggregate": "best"}, "aggregate"),
        ({"format": "card", "include_ties": "false"}, "include_ties"),
    ],
)
def test_bad_aggregation_and_filters_get_a_400_naming_them(api, bob, batch, params, named):
    response = api(bob).get(URL, {"format": "trl", **params})
    assert response.status_code == 400
    assert list(response.json()) == [named]


def test_an_unknown_criterion_gets_a_400(api, bob, criteria_project):
    response = api(bob).get(URL, {"format": "trl", "criterion": "wit"})
    assert response.status_code == 400
    assert "honesty" in response.json()["criterion"][0]


def test_the_card_says_which_aggregation_and_filters_made_its_counts(api, bob, graded):
    def card(**params):
        response = api(bob).get(URL, {"format": "card", **params})
        assert response.status_code == 200, response.content
        return response.content.decode()

    majority = card()
    assert "Aggregation: **majority**" in majority
    assert "| pairs with a winner (rows of `trl`, `hh-rlhf`, `openai`, ...) | 2 |" in majority
    assert "- Filters: none (all batches)." in majority
    text = card(aggregate="mean_strength", models="model-1,model-2", min_votes="2")
    assert "Aggregation: **mean_strength**" in text
    assert "mean strength favours" in text
    assert "| pairs with a winner (rows of `trl`, `hh-rlhf`, `openai`, ...) | 3 |" in text
    assert "- Filters: models `model-1`, `model-2`; at least 2 votes." in text
    assert card(aggregate="mean_strength") == card(aggregate="mean_strength")
    reliable = card(aggregate="reliability", include_gold="true")
    assert "crowd model" in reliable and "Mean label confidence of the pairs" in reliable
    assert "- Reliability fit: Crowd model, vote-level" in reliable
    assert "gold comparisons included" in reliable


def test_the_command_takes_the_same_aggregation_and_filters(api, bob, graded, tmp_path):
    target = tmp_path / "out.jsonl"
    call_command(
        "export", "demo", "--aggregate", "mean_strength", "--models", "model-1,model-2",
        "--include-gold", "false", "-o", str(target),
    )  # fmt: skip
    assert target.read_bytes() == raw(
        api, bob, format="trl", aggregate="mean_strength", models="model-1,model-2",
        include_gold="false",
    )  # fmt: skip
    card = tmp_path / "card.md"
    call_command("export", "demo", "--format", "card", "--aggregate", "unanimous", "-o", str(card))
    response = api(bob).get(URL, {"format": "card", "aggregate": "unanimous"})
    assert card.read_bytes() == response.content
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="aggregate"):
        call_command("export", "demo", "--format", "judgments", "--aggregate", "unanimous")
    with pytest.raises(CommandError, match="since"):
        call_command("export", "demo", "--since", "soon")


def test_datasets_reads_the_new_columns(api, bob, reliability_project, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    path = tmp_path / "reliable.jsonl"
    path.write_bytes(raw(api, bob, format="trl", aggregate="reliability", criterion="honesty"))
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert dataset.num_rows == 20
    assert dataset.features["label_confidence"].dtype == "float64"
    assert dataset.features["chosen_position"].dtype == "float64"
    assert dataset.features["guideline_versions"].feature.dtype == "int64"
    row = dataset[12]
    assert (row["prompt_id"], row["label_confidence"], row["guideline_versions"]) == (
        "r13",
        0.796,
        [1],
    )
    assert 0.0 <= row["chosen_position"] <= 1.0
    line = json.loads(path.read_text().splitlines()[12])
    assert line["chosen_position"] == row["chosen_position"]


@pytest.mark.parametrize(
    "options",
    [
        Options(aggregate="unanimous"),
        Options(aggregate="mean_strength"),
        Options(aggregate="reliability"),
        Options(aggregate="reliability", criterion="honesty"),
        Options(models=("model-1", "model-2", "model-3"), include_gold=True),
        Options(since=datetime(2000, 1, 1, tzinfo=UTC), criterion="honesty"),
    ],
    ids=["unanimous", "mean_strength", "reliability", "criterion", "models", "since"],
)
@pytest.mark.parametrize("format", ["trl", "kto"])
def test_statements_do_not_grow_with_rows(project, annotators, import_rows, options, format):
    project.scheme = "graded"
    project.criteria = [{"name": "honesty", "description": ""}]
    project.save()

    def statements() -> int:
        with CaptureQueriesContext(connection) as captured:
            exported = list(export_rows(project=project, format=format, options=options))
        assert exported
        return len(captured)

    def vote_everything() -> None:
        for user in annotators:
            while (lease := assignment_next(project=project, annotator=user)) is not None:
                judgment_submit(
                    assignment_id=lease.pk,
                    annotator=user,
                    strength=2 if lease.left_id == lease.comparison.candidate_a_id else -2,
                    criteria={"honesty": 1},
                )

    import_rows(prompt_line("first", n=3))
    vote_everything()
    few = statements()
    import_rows(*(prompt_line(f"more-{i}", n=3) for i in range(3)))
    vote_everything()
    assert statements() == few
