"""Honeypots in the exports and in /stats/: never training data, marked in the judgments."""

from collections import Counter
from typing import Any

import pytest

from apps.batches.models import Comparison
from apps.exports.formats import FORMATS, export_rows
from apps.exports.jobs import rows_estimate
from apps.exports.options import Options
from apps.exports.parquet import schema_for
from apps.judging.queue import Preference, assignment_next, judgment_submit
from apps.projects.models import Project
from tests.batches.test_honeypots import rich_line
from tests.conftest import prompt_line

TRAINING = ("trl", "trl-implicit", "kto", "hh-rlhf", "arena")


def vote_for(project: Project, user: Any, comparison: Comparison, option: str) -> None:
    """`user` votes for candidate A (option "a") or B of `comparison`."""
    lease = assignment_next(
        project=project, annotator=user, prefer=Preference(comparison.pk, swap=False)
    )
    assert lease is not None and lease.comparison_id == comparison.pk
    wanted = comparison.candidate_a_id if option == "a" else comparison.candidate_b_id
    choice = "left" if lease.left_id == wanted else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


@pytest.fixture
def voted(project, annotators, import_rows, settings) -> dict[str, Any]:
    """Three prompts with a honeypot each (the hand-made gold prompt too), every comparison
    voted by every annotator: ann and ben choose well on the honeypots, cat chooses the
    degraded side."""
    settings.IMPORT_HONEYPOT_SEED = "exports"
    project.gold_rate = 1.0
    project.honeypot_rate = 1.0
    project.save()
    hand = prompt_line("g")
    hand["gold"] = {"preferred": "c1"}
    import_rows(rich_line("p0"), rich_line("p1"), hand)
    honeypots = {
        c.pk: (c.candidate_a.degradation or c.candidate_b.degradation, c)
        for c in Comparison.objects.filter(is_gold=True).select_related(
            "candidate_a", "candidate_b"
        )
        if c.candidate_a.degradation or c.candidate_b.degradation
    }
    assert len(honeypots) == 3
    hand_gold = Comparison.objects.filter(prompt__external_id="g").exclude(pk__in=honeypots).get()
    for user in annotators:
        for comparison in Comparison.objects.order_by("id"):
            option = "a"
            if comparison.pk in honeypots:
                good = comparison.gold_answer
                option = good if user.username != "cat" else ("b" if good == "a" else "a")
            vote_for(project, user, comparison, option)
    return {"honeypots": honeypots, "hand_gold": hand_gold.pk}


@pytest.mark.parametrize("format", TRAINING)
def test_training_exports_never_hold_honeypots_even_with_gold(project, voted, format):
    options = Options(include_gold=True)
    ids = {
        row["comparison_id"] for row in export_rows(project=project, format=format, options=options)
    }
    assert voted["hand_gold"] in ids  # include_gold took the hand-made gold item
    assert not ids & set(voted["honeypots"])


def test_the_openai_export_has_trls_rows_without_honeypots(project, voted):
    options = Options(include_gold=True)
    trl = list(export_rows(project=project, format="trl", options=options))
    openai = list(export_rows(project=project, format="openai", options=options))
    # Six comparisons, three of them honeypots; the evidence is trl's (openai has none).
    assert len(trl) == len(openai) == 3


def test_judgments_rows_say_gold_and_degradation(project, voted):
    rows = list(
        export_rows(project=project, format="judgments", options=Options(include_gold=True))
    )
    by_comparison = {row["comparison_id"]: (row["gold"], row["degradation"]) for row in rows}
    for pk, (kind, _) in voted["honeypots"].items():
        assert by_comparison[pk] == (True, kind)
    assert by_comparison[voted["hand_gold"]] == (True, "")
    ordinary = [v for pk, v in by_comparison.items() if pk not in voted["honeypots"]]
    assert (False, "") in ordinary
    plain = list(export_rows(project=project, format="judgments"))
    assert plain and all(row["gold"] is False and row["degradation"] == "" for row in plain)


def test_the_judgments_parquet_schema_has_the_columns():
    names = schema_for("judgments").names
    assert names[-3:] == ["gold", "degradation", "source"]
    assert FORMATS["judgments"]


def test_stats_report_honeypot_accuracy_per_kind_and_annotator(api, bob, project, voted):
    report = api(bob).get("/api/v1/projects/demo/stats/").json()["honeypots"]
    assert report["meaning"]
    assert (report["items"], report["answers"]) == (3, 9)
    assert report["accuracy"] == round(6 / 9, 4)
    kinds = Counter(kind for kind, _ in voted["honeypots"].values())
    assert {k: v["items"] for k, v in report["kinds"].items()} == dict(kinds)
    for figures in report["kinds"].values():
        assert figures["answers"] == 3 * figures["items"]
    accuracy = {row["annotator"]: (row["answers"], row["accuracy"]) for row in report["annotators"]}
    assert sorted(accuracy.values()) == [(3, 0.0), (3, 1.0), (3, 1.0)]


def test_stats_without_honeypots_say_so(api, bob, project, import_rows):
    import_rows(prompt_line("p"))
    report = api(bob).get("/api/v1/projects/demo/stats/").json()["honeypots"]
    assert (report["items"], report["answers"], report["accuracy"]) == (0, 0, None)
    assert report["kinds"] == {} and report["annotators"] == []


def test_a_jobs_row_estimate_leaves_them_out_too(project, voted):
    options = Options(include_gold=True)
    # Six judged comparisons, three of them honeypots; three votes each.
    assert rows_estimate(project=project, format="trl", options=options) == 3
    assert rows_estimate(project=project, format="arena", options=options) == 9
    assert rows_estimate(project=project, format="judgments", options=options) == 18
