"""AI judges' votes in the results: never in a figure about people, in exports only when asked
for (`sources=ai|all`, each row counting its votes per source), and /stats/'s `ai_judges`
section beside people's agreement."""

import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from apps.batches.models import Comparison
from apps.dashboard.figures import project_figures
from apps.dashboard.render import figures_html
from apps.exports.card import dataset_card
from apps.exports.formats import export_rows
from apps.exports.jobs import export_parquet_write
from apps.exports.options import Options
from apps.judging.models import Judgment
from apps.judging.queue import Preference, assignment_next, judgment_submit
from tests.conftest import prompt_line
from tests.judges.factories import ai_vote, make_judge

EXPORT = "/api/v1/projects/demo/export/"
STATS = "/api/v1/projects/demo/stats/"
JOBS = "/api/v1/projects/demo/exports/"

# Four comparisons (p-1's three pairs, then p-2's one), three people, candidate A on the left:
# ann a a b a / ben a tie b a / cat b a both_bad a.
PLAN = {
    "ann": ["a", "a", "b", "a"],
    "ben": ["a", "tie", "b", "a"],
    "cat": ["b", "a", "both_bad", "a"],
}


def vote(project, user, comparison, option, **answers: Any) -> None:
    """`user` judges `comparison` with candidate A on the left: 'a', 'b', 'tie', 'both_bad'."""
    prefer = Preference(comparison.pk, swap=False)
    lease = assignment_next(project=project, annotator=user, prefer=prefer)
    assert lease is not None and lease.comparison_id == comparison.pk
    assert lease.left_id == comparison.candidate_a_id
    choice = {"a": "left", "b": "right"}.get(option, option)
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice, **answers)


@pytest.fixture
def voted(project, annotators, import_rows) -> list[Comparison]:
    import_rows(prompt_line("p-1", n=3), prompt_line("p-2"))
    comparisons = list(Comparison.objects.order_by("id"))
    for user in annotators:
        for comparison, option in zip(comparisons, PLAN[user.username], strict=True):
            vote(project, user, comparison, option)
    return comparisons


def add_ai_votes(project, comparisons) -> tuple[Any, Any]:
    """judge-1: a (consistent), tie, no vote (its orders disagreed), a; judge-2 (prompt v2):
    b on the first comparison, and a timeout on the second (not judged)."""
    one = make_judge(project, "judge-1")
    ai_vote(one, comparisons[0], "a")
    ai_vote(one, comparisons[1], "tie")
    ai_vote(one, comparisons[2], None, consistent=False)
    ai_vote(one, comparisons[3], "a")
    two = make_judge(project, "judge-2", template_version="v2")
    ai_vote(two, comparisons[0], "b")
    verdict = ai_vote(two, comparisons[1], None, consistent=None, template_version="v1")
    verdict.failure = "timeout"
    verdict.save()
    return one, two


def streamed(client, **params) -> list[dict]:
    response = client.get(EXPORT, params)
    assert response.status_code == 200, response.content
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


FORMATS = ("trl", "kto", "hh-rlhf", "openai", "arena", "judgments")


def human_figures(client, project) -> dict[str, Any]:
    """Every figure about people: /stats/ (but `ai_judges`), the default exports, the card (up
    to its AI judges) and the dashboard's figures (but their clock and `ai_judges`)."""
    stats = client.get(STATS).json()
    stats.pop("ai_judges")
    card = dataset_card(project=project)
    if "\n\n## AI judges" in card:
        head, tail = card.split("\n\n## AI judges")
        card = head + tail[tail.index("\n\nMade by") :]
    dashboard = project_figures(project)
    for key in ("computed_at", "compute_seconds", "ai_judges"):
        dashboard.pop(key)
    return {
        "stats": stats,
        "card": card,
        "dashboard": dashboard,
        **{format: streamed(client, format=format) for format in FORMATS},
        "reliability": streamed(client, format="trl", aggregate="reliability"),
    }


def test_ai_votes_change_no_figure_about_people(api, bob, project, voted):
    client = api(bob)
    before = human_figures(client, project)
    assert before["stats"]["counts"]["judgments"] == 12
    add_ai_votes(project, voted)
    assert Judgment.objects.filter(source="ai").count() == 4
    after = human_figures(client, project)
    for name in before:
        assert after[name] == before[name], name
    # The comparisons' counters never counted them.
    assert [c.judgment_count for c in Comparison.objects.order_by("id")] == [3, 3, 3, 3]


def test_role_ai_members_are_never_listed_as_annotators(api, bob, project, voted):
    one, _ = add_ai_votes(project, voted)
    stats = api(bob).get(STATS).json()
    assert len(stats["annotators"]) == 3
    assert stats["counts"]["annotators"] == 3
    figures = project_figures(project)
    listed = {row["username"] for row in figures["throughput"]} | {
        row["username"] for row in figures["annotators"]
    }
    assert listed == {"ann", "ben", "cat"}
    assert figures["totals"]["annotators"] == 3
    names = {name for row in streamed(api(bob), format="judgments") for name in [row["annotator"]]}
    assert len(names) == 3 and not any(name.startswith("ai:") for name in names)
    # An AI judge's account is made with its judge, never added through the API.
    response = api(bob).post(
        "/api/v1/projects/demo/members/", {"username": "charlie", "role": "ai"}, format="json"
    )
    assert response.status_code == 400
    assert "role" in response.json()
    assert one.account.username not in listed


def test_sources_ai_exports_only_the_ai_votes_and_all_both(api, bob, project, voted):
    add_ai_votes(project, voted)
    client = api(bob)
    human = streamed(client, format="trl")
    assert [row["votes_by_source"] for row in human] == [{"human": 3, "ai": 0}] * 4
    # AI votes alone: comparison 1 splits a/b, 2 is a tie, 3 has none, 4 is judge-1's a.
    ai = streamed(client, format="trl", sources="ai")
    assert [(row["comparison_id"], row["votes_by_source"]) for row in ai] == [
        (voted[3].pk, {"human": 0, "ai": 1})
    ]
    assert ai[0]["annotators"] == ["ai:judge-1"]
    both = streamed(client, format="trl", sources="all")
    by_comparison = {row["comparison_id"]: row for row in both}
    # Comparison 1: a a b + a b (5 votes, a 3); comparison 4: a a a + a.
    assert by_comparison[voted[0].pk]["votes_by_source"] == {"human": 3, "ai": 2}
    assert by_comparison[voted[0].pk]["n_annotators"] == 5
    assert by_comparison[voted[3].pk]["votes_by_source"] == {"human": 3, "ai": 1}
    kto = streamed(client, format="kto", sources="ai")
    assert [row["votes_by_source"] for row in kto] == [{"human": 0, "ai": 1}] * 2

    judgments = streamed(client, format="judgments", sources="ai")
    assert len(judgments) == 4 and {row["source"] for row in judgments} == {"ai"}
    assert {row["annotator"] for row in judgments} == {"ai:judge-1", "ai:judge-2"}
    every = streamed(client, format="judgments", sources="all")
    assert len(every) == 16
    assert sum(row["source"] == "human" for row in every) == 12
    arena = streamed(client, format="arena", sources="ai")
    assert len(arena) == 4 and {row["source"] for row in arena} == {"ai"}
    assert len(streamed(client, format="arena", sources="all")) == 16
    assert {row["source"] for row in streamed(client, format="arena")} == {"human"}


def test_the_parquet_of_all_sources_has_the_counts(project, voted):
    add_ai_votes(project, voted)
    options = Options(sources=("human", "ai"))
    for format in ("trl", "kto", "judgments", "arena"):
        sink = io.BytesIO()
        rows = export_rows(project=project, format=format, options=options)
        export_parquet_write(project=project, format=format, options=options, rows=rows, sink=sink)
        table = pq.read_table(io.BytesIO(sink.getvalue()))
        if format in ("judgments", "arena"):
            assert sorted(set(table.column("source").to_pylist())) == ["ai", "human"]
        else:
            counts = table.column("votes_by_source").to_pylist()
            assert {"human": 3, "ai": 2} in counts
            assert str(table.schema.field("votes_by_source").type) == (
                "struct<human: int64, ai: int64>"
            )


def test_the_card_counts_the_ai_rows_and_says_whose_votes(project, voted):
    add_ai_votes(project, voted)
    card = dataset_card(project=project, options=Options(sources=("ai",)))
    assert "| pairs with a winner (rows of `trl`, `hh-rlhf`, `openai`, ...) | 1 |" in card
    assert "the AI judges' votes only" in card


@pytest.mark.parametrize("format", ["trl", "judgments", "arena", "card", "kto"])
def test_a_bad_sources_value_is_a_400_naming_it(api, bob, project, voted, format):
    response = api(bob).get(EXPORT, {"format": format, "sources": "robots"})
    assert response.status_code == 400
    assert "sources" in response.json()


def test_a_background_job_validates_and_stores_sources(api, bob, project, voted):
    add_ai_votes(project, voted)
    client = api(bob)
    response = client.post(JOBS, {"format": "trl", "sources": "robots"}, format="json")
    assert response.status_code == 400
    assert "sources" in response.json()
    job = client.post(JOBS, {"format": "judgments", "sources": "ai"}, format="json").json()
    assert job["status"] == "done", job
    assert job["parameters"] == {"sources": "ai"}
    data = b"".join(client.get(job["download"]).streaming_content)
    assert {json.loads(line)["source"] for line in data.splitlines()} == {"ai"}
    assert len(data.splitlines()) == 4


def test_the_listwise_format_takes_sources(api, bob, project, annotators, import_rows):
    project.scheme = "listwise"
    project.save()
    import_rows(prompt_line("r-1", n=3))
    comparison = Comparison.objects.get()
    ids = list(comparison.candidate_ids)
    for user in annotators:
        lease = assignment_next(project=project, annotator=user)
        assert lease is not None
        judgment_submit(assignment_id=lease.pk, annotator=user, ranking=["c1", "c2", "c3"])
    judge = make_judge(project)
    ai_vote(judge, comparison, "ranking", ranking=[[ids[2]], [ids[1]], [ids[0]]])
    client = api(bob)
    (human,) = streamed(client, format="listwise")
    assert human["votes_by_source"] == {"human": 3, "ai": 0} and human["n_annotators"] == 3
    (ai,) = streamed(client, format="listwise", sources="ai")
    assert ai["votes_by_source"] == {"human": 0, "ai": 1}
    assert ai["rankings"] == [{"annotator": "ai:judge-1", "ranking": [["c3"], ["c2"], ["c1"]]}]
    (both,) = streamed(client, format="listwise", sources="all")
    assert both["votes_by_source"] == {"human": 3, "ai": 1}
    # Its pairs in the pairwise formats: c1 over c2 by people, c2 over c1 by the judge.
    pairs = streamed(client, format="trl", sources="ai")
    assert [row["votes_by_source"] for row in pairs] == [{"human": 0, "ai": 1}] * 3
    assert {row["chosen_id"] for row in streamed(client, format="trl")} == {"c1", "c2"}
    assert api(bob).get(EXPORT, {"format": "listwise", "sources": "nope"}).status_code == 400


def test_stats_ai_judges_on_a_hand_computed_case(api, bob, project, voted):
    report = api(bob).get(STATS).json()["ai_judges"]
    assert report["judges"] == [] and report["human_human_agreement"] is None
    add_ai_votes(project, voted)
    report = api(bob).get(STATS).json()["ai_judges"]
    assert report["meaning"] and set(report["meanings"]) >= {
        "order_consistency",
        "human_ai_agreement",
        "human_human_agreement",
    }
    one, two = report["judges"]
    assert one["judge"] == "judge-1" and one["template_versions"] == ["v1"]
    # Four verdicts read in both orders, three consistent.
    assert (one["comparisons_judged"], one["order_consistency"], one["inconsistent"]) == (
        4,
        0.75,
        1,
    )
    # Pairs with people: a vs a a b (2 of 3), tie vs a tie a (1 of 3), a vs a a a (3 of 3);
    # without ties: a vs a a b (2 of 3) and a vs a a a (3 of 3).
    assert one["human_ai_agreement"] == {
        "with_ties": {"agreement": round(6 / 9, 4), "pairs": 9},
        "without_ties": {"agreement": round(5 / 6, 4), "pairs": 6},
    }
    assert two["template_versions"] == ["v1", "v2"]
    assert (two["comparisons_judged"], two["order_consistency"], two["inconsistent"]) == (1, 1, 0)
    assert two["human_ai_agreement"]["with_ties"] == {"agreement": round(1 / 3, 4), "pairs": 3}
    # People: a a b (1 of 3), a tie a (1 of 3), b b both_bad (1 of 3), a a a (3 of 3);
    # without ties: 1 of 3, 1 of 1, 1 of 1, 3 of 3.
    assert report["human_human_agreement"] == {
        "with_ties": {"agreement": 0.5, "pairs": 12},
        "without_ties": {"agreement": 0.75, "pairs": 8},
    }
    # The same as the people's agreement of the report.
    agreement = api(bob).get(STATS).json()["agreement"]["pairwise"]
    assert report["human_human_agreement"] == agreement
    assert "criteria" not in one


def test_stats_ai_judges_per_criterion(api, bob, project, annotators, import_rows):
    project.criteria = [{"name": "honesty", "description": ""}]
    project.save()
    import_rows(prompt_line("p-1"))
    comparison = Comparison.objects.get()
    for user, option, honest in zip(annotators, "aab", ["left", "right", "right"], strict=True):
        vote(project, user, comparison, option, criteria={"honesty": honest})
    judge = make_judge(project)
    ai_vote(judge, comparison, "a", criteria={"honesty": {"option": "b", "strength": None}})
    report = api(bob).get(STATS).json()["ai_judges"]
    (entry,) = report["judges"]
    assert entry["criteria"]["honesty"]["with_ties"] == {"agreement": round(2 / 3, 4), "pairs": 3}
    assert entry["human_ai_agreement"]["with_ties"]["agreement"] == round(2 / 3, 4)
    assert report["criteria_human_human_agreement"]["honesty"]["with_ties"] == {
        "agreement": round(1 / 3, 4),
        "pairs": 3,
    }
    html = figures_html(project_figures(project))
    assert 'data-testid="ai-judges-criteria"' in html
    row = html.split('data-testid="ai-judges-criteria"')[1].split("</table>")[0]
    assert '<th scope="row">honesty</th>' in row and "66.7%" in row and "33.3%" in row


def test_the_dashboard_and_the_card_show_the_judges(project, voted):
    assert 'data-testid="ai-judges"' not in figures_html(project_figures(project))
    add_ai_votes(project, voted)
    figures = project_figures(project)
    assert [j["judge"] for j in figures["ai_judges"]["judges"]] == ["judge-1", "judge-2"]
    html = figures_html(figures)
    assert 'data-testid="ai-judges"' in html
    assert '<tr data-judge="judge-1"><th scope="row">judge-1</th><td>v1</td><td class="num">4' in (
        html
    )
    assert "People with each other" in html
    assert figures["ai_judges"]["meanings"]["order_consistency"] in html
    card = dataset_card(project=project)
    section = card.split("## AI judges")[1]
    assert section.count("\n- ") == 2
    assert "- judge-1 (prompt `v1`): 4 comparisons judged" in section
    assert "75.0%" in section


def test_the_ai_judges_section_costs_a_fixed_number_of_queries(
    api, bob, project, voted, django_assert_num_queries
):
    add_ai_votes(project, voted)
    client = api(bob)
    client.get(STATS)
    # As without judges (tests/agreement/test_stats.py: 8), and the people's votes, the
    # judges' votes and their verdicts, whatever the number of judges.
    with django_assert_num_queries(11):
        assert client.get(STATS).status_code == 200
