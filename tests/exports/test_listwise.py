"""Listwise projects in exports, checked number by number on a tiny hand-ranked project.

Two prompts, each ranked by the three annotators (ids are the responses' external ids):
- `r-1`, four responses: ann c1 > c2 > c4 > c3; ben c2 > c1 > (c3 = c4); cat c1 > (c2 = c3) > c4.
  Places (a tie shares the mean of its places): c1 1, 2, 1 (mean 4/3); c2 2, 1, 2.5 (11/6);
  c3 4, 3.5, 2.5 (10/3); c4 3, 3.5, 4 (7/2). Merged ranks 1, 2, 3, 4.
  Kendall's W: rank sums 4, 5.5, 10, 10.5 around 7.5, S = 31.5; ties T = 6 + 6;
  W = 12 * 31.5 / (9 * 60 - 3 * 12) = 378 / 504 = 0.75.
  Pairs: c1-c2 a, b, a (c1 2/3); c1-c3, c1-c4, c2-c4 unanimous; c2-c3 a, a, tie (c2 2/3);
  c3-c4 b, tie, a (a split: no row).
- `r-2`, three responses: ann c1 > c2 > c3; ben c2 > c1 > c3; cat (c1 = c2) > c3.
  Means c1 3/2, c2 3/2, c3 3: merged ranks 1, 1, 3. W = 12 * 13.5 / (9 * 24 - 3 * 6) = 0.8182.
  Pairs: c1-c2 a, b, tie (split); c1-c3 and c2-c3 unanimous.
"""

import json

import pytest
from datasets import load_dataset

from apps.exports.formats import FORMATS, export_rows
from apps.exports.options import Options
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line
from tests.exports.test_exports import URL, rows

RANKINGS = {
    "r-1": [["c1", "c2", "c4", "c3"], ["c2", "c1", ["c3", "c4"]], ["c1", ["c2", "c3"], "c4"]],
    "r-2": [["c1", "c2", "c3"], ["c2", "c1", "c3"], [["c1", "c2"], "c3"]],
}


@pytest.fixture
def ranked(project, annotators, import_rows):
    project.scheme = "listwise"
    project.save()
    import_rows(prompt_line("r-1", n=4), prompt_line("r-2", n=3))
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            ranking = RANKINGS[lease.comparison.prompt.external_id][index]
            judgment_submit(assignment_id=lease.pk, annotator=user, ranking=ranking)
    return project


def export(api, bob, format: str, **params: str) -> list[dict]:
    return rows(api(bob).get(URL, {"format": format, **params}))


def test_the_listwise_format_merges_each_prompt_and_keeps_every_ranking(api, bob, ranked):
    exported = export(api, bob, "listwise")
    assert [r["prompt_id"] for r in exported] == ["r-1", "r-2"]
    first, second = exported
    # The conversational form by default, as in the pairwise formats.
    assert first["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert [(c["id"], c["rank"], c["mean_place"]) for c in first["candidates"]] == [
        ("c1", 1, 1.3333),
        ("c2", 2, 1.8333),
        ("c3", 3, 3.3333),
        ("c4", 4, 3.5),
    ]
    assert first["candidates"][0] == {
        "id": "c1",
        "model": "model-1",
        "text": "Answer 1 to r-1",
        "rank": 1,
        "mean_place": 1.3333,
    }
    assert [r["ranking"] for r in first["rankings"]] == [
        [["c1"], ["c2"], ["c4"], ["c3"]],
        [["c2"], ["c1"], ["c3", "c4"]],
        [["c1"], ["c2", "c3"], ["c4"]],
    ]
    assert len({r["annotator"] for r in first["rankings"]}) == 3
    assert all(r["annotator"].startswith("ann-") for r in first["rankings"])
    assert (first["n_annotators"], first["kendall_w"]) == (3, 0.75)
    assert first["batch"] == second["batch"] and first["guideline_versions"] == [1]
    assert [(c["id"], c["rank"]) for c in second["candidates"]] == [
        ("c1", 1),
        ("c2", 1),
        ("c3", 3),
    ]
    assert second["kendall_w"] == 0.8182


def test_rankings_become_pairs_in_every_pairwise_format(api, bob, ranked):
    exported = export(api, bob, "trl")
    pairs = [(r["prompt_id"], r["chosen_id"], r["rejected_id"]) for r in exported]
    assert pairs == [
        ("r-1", "c1", "c2"),
        ("r-1", "c1", "c3"),
        ("r-1", "c1", "c4"),
        ("r-1", "c2", "c3"),
        ("r-1", "c2", "c4"),
        ("r-2", "c1", "c3"),
        ("r-2", "c2", "c3"),
    ]
    c1_c2, c1_c3, _, c2_c3, *_ = exported
    assert [r["unanimous"] for r in exported] == [False, True, True, False, True, True, True]
    assert c1_c3["votes"] == {"chosen": 3, "rejected": 0, "tie": 0, "both_bad": 0}
    assert c1_c2["votes"] == {"chosen": 2, "rejected": 1, "tie": 0, "both_bad": 0}
    assert (c1_c2["agreement"], c1_c2["n_annotators"]) == (0.6667, 3)
    assert c2_c3["votes"] == {"chosen": 2, "rejected": 0, "tie": 1, "both_bad": 0}
    assert c1_c2["chosen"] == [{"role": "assistant", "content": "Answer 1 to r-1"}]
    assert c1_c2["rejected"] == [{"role": "assistant", "content": "Answer 2 to r-1"}]
    assert len({r["comparison_id"] for r in exported}) == 2
    for format in ("trl-implicit", "hh-rlhf", "openai"):
        assert len(export(api, bob, format)) == 7, format
    kto = export(api, bob, "kto")
    assert len(kto) == 14 and sum(r["label"] for r in kto) == 7
    # The filters apply to the pairs: unanimous pairs only.
    assert len(export(api, bob, "trl", min_agreement="1")) == 5


def test_the_listwise_format_filters_and_reads_back(api, bob, ranked, tmp_path):
    assert len(export(api, bob, "listwise", min_votes="4")) == 0
    train = export(api, bob, "listwise", split="train", test_fraction="0.5")
    test = export(api, bob, "listwise", split="test", test_fraction="0.5")
    assert sorted(r["prompt_id"] for r in train + test) == ["r-1", "r-2"]
    response = api(bob).get(URL, {"format": "listwise", "nonsense": "1"})
    assert response.status_code == 400 and "nonsense" in response.json()
    path = tmp_path / "listwise.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in export(api, bob, "listwise")))
    dataset = load_dataset("json", data_files=str(path), split="train")
    assert dataset.num_rows == 2
    assert dataset.features["candidates"].feature["rank"].dtype == "int64"
    assert dataset[0]["rankings"][1]["ranking"] == [["c2"], ["c1"], ["c3", "c4"]]


def test_a_pairwise_project_has_no_listwise_rows_and_listwise_reads_nothing_else(
    project, annotators, import_rows
):
    import_rows(prompt_line("pair"))
    assert "listwise" in FORMATS
    assert list(export_rows(project=project, format="listwise", options=Options())) == []


@pytest.mark.parametrize("format", ["listwise", "trl", "kto", "judgments"])
def test_listwise_exports_are_byte_identical_and_filter_by_batch(api, bob, ranked, format):
    def raw(**params: str) -> bytes:
        response = api(bob).get(URL, {"format": format, **params})
        assert response.status_code == 200
        return b"".join(response.streaming_content)

    first = raw()
    assert first and raw() == first
    batch = json.loads(first.splitlines()[0])["batch" if format != "judgments" else "comparison_id"]
    if format != "judgments":
        assert raw(batch=str(batch)) == first
        missing = api(bob).get(URL, {"format": format, "batch": str(batch + 1000)})
        assert missing.status_code == 400 and list(missing.json()) == ["batch"]


@pytest.mark.parametrize("params", [{}, {"since": "2000-01-01T00:00:00Z"}, {"split": "train"}])
def test_listwise_rows_are_the_same_read_a_ranked_prompt_at_a_time(
    api, bob, ranked, monkeypatch, params
):
    from apps.exports import rankings

    def raw() -> bytes:
        response = api(bob).get(URL, {"format": "listwise", **params})
        assert response.status_code == 200
        return b"".join(response.streaming_content)

    whole = raw()
    monkeypatch.setattr(rankings, "CHUNK", 1)  # keyset pages of one comparison
    assert raw() == whole
    if not params:
        assert whole.count(b"\n") == 2


def test_listwise_exports_cost_the_same_statements_for_few_rows_and_many(
    project, annotators, import_rows
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project.scheme = "listwise"
    project.save()

    def statements(format: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert list(export_rows(project=project, format=format, options=Options()))
        return len(captured)

    def rank_all() -> None:
        for user in annotators:
            while (lease := assignment_next(project=project, annotator=user)) is not None:
                ranking = [c.external_id for c in lease.comparison.prompt.candidates.all()]
                judgment_submit(assignment_id=lease.pk, annotator=user, ranking=ranking)

    import_rows(prompt_line("first", n=3))
    rank_all()
    few = {format: statements(format) for format in ("listwise", "trl")}
    import_rows(*(prompt_line(f"more-{i}", n=5) for i in range(4)))
    rank_all()
    assert {format: statements(format) for format in ("listwise", "trl")} == few


def test_ranking_pairs_take_the_aggregations_and_filters(api, bob, ranked):
    def pairs(**params: str) -> list[tuple[str, str, str]]:
        return [
            (r["prompt_id"], r["chosen_id"], r["rejected_id"])
            for r in export(api, bob, "trl", **params)
        ]

    # Unanimous: the five pairs every ranking orders alike.
    assert pairs(aggregate="unanimous") == [
        ("r-1", "c1", "c3"),
        ("r-1", "c1", "c4"),
        ("r-1", "c2", "c4"),
        ("r-2", "c1", "c3"),
        ("r-2", "c2", "c3"),
    ]
    # Rankings have no graded strength and no criteria.
    assert pairs(aggregate="mean_strength") == []
    # Reliability: Dawid-Skene over the rankings' pair votes. Every majority pair keeps its
    # winner here; the annotators' estimated reliability also settles a split (r-2's c1-c2).
    reliable = export(api, bob, "trl", aggregate="reliability")
    decided = [(r["prompt_id"], r["chosen_id"], r["rejected_id"]) for r in reliable]
    assert set(pairs()) <= set(decided)
    assert {(p, min(a, b), max(a, b)) for p, a, b in set(decided) - set(pairs())} <= {
        ("r-1", "c3", "c4"),
        ("r-2", "c1", "c2"),
    }
    assert all(0.5 < r["label_confidence"] <= 1 for r in reliable)
    # A ranking has no sides: a listwise project's rows have no chosen_position column.
    assert all("chosen_position" not in r for r in reliable)
    assert pairs(models="model-1,model-3") == [("r-1", "c1", "c3"), ("r-2", "c1", "c3")]
    assert pairs(since="2999-01-01T00:00:00+00:00") == []
    assert len(pairs(since="2000-01-01T00:00:00+00:00")) == 7
    assert len(export(api, bob, "listwise", since="2999-01-01T00:00:00+00:00")) == 0
