"""The stats endpoint: agreement, annotators and models, by hand and against the libraries."""

import krippendorff
import numpy as np
import pytest

from apps.batches.models import Comparison
from apps.judging.models import Judgment
from apps.judging.queue import Preference, assignment_next, judgment_submit
from apps.projects.selectors import pseudonyms_for
from apps.projects.services import project_create
from tests.agreement.test_stats_fast import wilson
from tests.conftest import prompt_line

URL = "/api/v1/projects/demo/stats/"


def vote(project, user, comparison, option, *, a_on_left=True, duration_ms=None, strength=None):
    """Judge `comparison` as `user` with option 'a', 'b', 'tie' or 'both_bad' (or a screen
    strength, in a graded project), with candidate A shown on the left or on the right."""
    prefer = Preference(comparison.pk, swap=not a_on_left)
    lease = assignment_next(project=project, annotator=user, prefer=prefer)
    assert lease is not None
    assert lease.comparison_id == comparison.pk
    assert (lease.left_id == comparison.candidate_a_id) == a_on_left
    if strength is not None:
        judgment_submit(
            assignment_id=lease.pk, annotator=user, strength=strength, duration_ms=duration_ms
        )
        return
    choice = option
    if option in ("a", "b"):
        choice = "left" if (option == "a") == a_on_left else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice, duration_ms=duration_ms)


def stats(api, user, **params):
    response = api(user).get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


# Four comparisons, three annotators. X, Y, Z are the pairs of one prompt's three models (1-2,
# 1-3, 2-3); W is 1-2 again, on a second prompt. Per annotator: (option, A on the left, ms).
PLAN = {
    "ann": [("a", True, 1000), ("a", True, 2000), ("b", True, 3000), ("a", True, 4000)],
    "ben": [("a", False, 500), ("tie", True, 1500), ("b", True, 2500), ("a", True, 3500)],
    "cat": [("b", True, 100), ("a", True, 200), ("both_bad", True, 300), ("a", True, None)],
}


@pytest.fixture
def judged(project, annotators, import_rows):
    import_rows(prompt_line("p-1", n=3), prompt_line("p-2"))
    comparisons = list(Comparison.objects.order_by("id"))
    assert [(c.candidate_a.model, c.candidate_b.model) for c in comparisons] == [
        ("model-1", "model-2"),
        ("model-1", "model-3"),
        ("model-2", "model-3"),
        ("model-1", "model-2"),
    ]
    for user in annotators:
        for comparison, (option, a_on_left, ms) in zip(
            comparisons, PLAN[user.username], strict=True
        ):
            vote(project, user, comparison, option, a_on_left=a_on_left, duration_ms=ms)
    return project


def test_it_counts_a_hand_computed_project(api, bob, judged, annotators):
    report = stats(api, bob)
    assert report["counts"]["comparisons"] == 4
    assert report["counts"]["judgments"] == 12
    assert report["counts"]["annotators"] == 3
    assert report["counts"]["gold_judgments"] == 0
    assert report["counts"]["filters"] == {"batch": None}


def test_it_computes_agreement_by_hand(api, bob, judged):
    agreement = stats(api, bob)["agreement"]
    # Options: X a a b, Y a tie a, Z b b both_bad, W a a a.
    # With ties, agreeing pairs: X 1, Y 1, Z 1, W 3 of 12.
    # Without ties, pairs of a/b votes: X 3 (1 agrees), Y 1 (agrees), Z 1 (agrees), W 3 (agree).
    assert agreement["pairwise"] == {
        "with_ties": {"agreement": 0.5, "pairs": 12},
        "without_ties": {"agreement": 0.75, "pairs": 8},
    }
    # Nominal alpha: D_o = 6/12 (four disagreeing ordered pairs in X, Y, Z, each weighted 1/2);
    # D_e = (12^2 - (7^2 + 3^2 + 1 + 1)) / (12 * 11) = 84/132; alpha = 1 - D_o/D_e = 3/14.
    assert agreement["krippendorff_alpha_nominal"] == round(3 / 14, 4)
    assert agreement["krippendorff_alpha_ordinal"] is None
    # Fleiss: P = (1/3 + 1/3 + 1/3 + 1) / 4 = 1/2; p = 7/12, 3/12, 1/12, 1/12: P_e = 60/144;
    # kappa = (1/2 - 60/144) / (1 - 60/144) = 1/7.
    assert agreement["fleiss_kappa"] == round(1 / 7, 4)
    assert agreement["fleiss_kappa_note"] is None
    assert agreement["reference"]["instructgpt"]["agreement"] == 0.726
    assert agreement["reference"]["instructgpt"]["plus_minus"] == 0.015
    assert agreement["reference"]["hh_rlhf"]["agreement"] == 0.63


def test_it_describes_each_annotator_by_pseudonym(api, bob, judged, annotators):
    names = pseudonyms_for(judged)
    report = stats(api, bob)["annotators"]
    by_name = {entry["annotator"]: entry for entry in report}
    assert sorted(by_name) == sorted(names[user.pk] for user in annotators)
    assert [e["annotator"] for e in report] == sorted(by_name)
    ann, ben, cat = (by_name[names[user.pk]] for user in annotators)
    # Leave-one-out: only W (for everyone), Y (ben, tie vs a a), X and Z (cat) have a majority
    # among the two others.
    assert (ann["agreement_with_others"], ann["agreement_with_others_comparisons"]) == (1.0, 1)
    assert (ben["agreement_with_others"], ben["agreement_with_others_comparisons"]) == (0.5, 2)
    assert (cat["agreement_with_others"], cat["agreement_with_others_comparisons"]) == (
        round(1 / 3, 4),
        3,
    )
    # Sides chosen: ann left, left, right, left; ben right, right, left; cat right, left, left.
    assert ann["position_bias"] == {
        "left_share": 0.75,
        "left": 3,
        "side_choices": 4,
        "ci95": wilson(3, 4),
        "project_left_share": 0.5,  # the median of ben's 1/3 and cat's 2/3
        "test": ann["position_bias"]["test"],  # by hand in test_stats_fast
    }
    assert ann["position_bias"]["test"]["side"] is None
    assert ben["position_bias"]["left_share"] == round(1 / 3, 4)
    assert ben["position_bias"]["ci95"] == wilson(1, 3)
    assert cat["position_bias"]["left_share"] == round(2 / 3, 4)
    assert cat["position_bias"]["ci95"] == wilson(2, 3)
    assert [e["tie_rate"] for e in (ann, ben, cat)] == [0.0, 0.25, 0.0]
    assert [e["both_bad_rate"] for e in (ann, ben, cat)] == [0.0, 0.0, 0.25]
    assert [e["median_duration_ms"] for e in (ann, ben, cat)] == [2500, 2000, 200]
    assert [e["judgments"] for e in (ann, ben, cat)] == [4, 4, 4]
    assert [e["gold_answered"] for e in (ann, ben, cat)] == [0, 0, 0]
    assert [e["gold_accuracy"] for e in (ann, ben, cat)] == [None, None, None]


def test_it_computes_win_rates_and_ranks_the_models(api, bob, judged):
    models = stats(api, bob)["models"]
    rates = models["win_rates"]
    # 1 vs 2: X a a b, W a a a. 1 vs 3: Y a tie a. 2 vs 3: Z b b (both_bad left out).
    assert rates["model-1"]["model-2"] == {
        "win_rate": round(5 / 6, 4),
        "wins": 5,
        "losses": 1,
        "ties": 0,
        "votes": 6,
    }
    assert rates["model-2"]["model-1"]["win_rate"] == round(1 / 6, 4)
    assert rates["model-1"]["model-3"] == {
        "win_rate": round(2.5 / 3, 4),
        "wins": 2,
        "losses": 0,
        "ties": 1,
        "votes": 3,
    }
    assert rates["model-3"]["model-1"]["win_rate"] == round(0.5 / 3, 4)
    assert rates["model-2"]["model-3"]["win_rate"] == 0.0
    assert rates["model-3"]["model-2"] == {
        "win_rate": 1.0,
        "wins": 2,
        "losses": 0,
        "ties": 0,
        "votes": 2,
    }
    assert "both-bad" in models["win_rates_note"]
    ranked = models["bradley_terry"]["models"]
    assert [m["model"] for m in ranked] == ["model-1", "model-3", "model-2"]
    assert [m["votes"] for m in ranked] == [9, 5, 8]
    for m in ranked:
        low, high = m["ci95"]
        assert low <= m["score"] <= high
    assert sum(m["score"] for m in ranked) == pytest.approx(3000, abs=0.2)
    assert "400 * log10" in models["bradley_terry"]["scale"]


def test_it_gives_the_same_json_twice(api, bob, judged):
    first = api(bob).get(URL)
    second = api(bob).get(URL)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


# -- against the libraries, through the endpoint -------------------------------------------------


def test_fleiss_is_null_with_a_note_on_unequal_votes(api, bob, judged, annotators, import_rows):
    import_rows(prompt_line("p-3"))
    vote(judged, annotators[0], Comparison.objects.order_by("id").last(), "a")
    agreement = stats(api, bob)["agreement"]
    assert agreement["fleiss_kappa"] is None
    assert "from 1 to 3 votes" in agreement["fleiss_kappa_note"]
    assert agreement["krippendorff_alpha_nominal"] is not None


def test_graded_strength_gives_ordinal_alpha(api, bob, project, annotators, import_rows):
    project.scheme = "graded"
    project.save()
    import_rows(prompt_line("p-1", n=3), prompt_line("p-2"))
    screens = {"ann": [-3, -1, 2, 0], "ben": [-2, -1, 3, 1], "cat": [-3, 1, 1, -1]}
    comparisons = list(Comparison.objects.order_by("id"))
    for user in annotators:
        for comparison, screen in zip(comparisons, screens[user.username], strict=True):
            vote(project, user, comparison, None, strength=screen)
    matrix = np.array(
        [
            [Judgment.objects.get(annotator=user, comparison=c).strength for c in comparisons]
            for user in annotators
        ],
        dtype=float,
    )
    # ann's -3 on screen (left much better) with candidate A on the left: +3 for candidate A.
    assert Judgment.objects.get(annotator=annotators[0], comparison=comparisons[0]).strength == 3
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert stats(api, bob)["agreement"]["krippendorff_alpha_ordinal"] == round(expected, 4)


def test_gold_items_give_accuracy_only(api, bob, project, annotators, import_rows):
    project.gold_rate = 1.0
    project.save()
    row = prompt_line("g")
    row["gold"] = {"preferred": "c1"}
    import_rows(row)
    for user, correct in zip(annotators[:2], (True, False), strict=True):
        lease = assignment_next(project=project, annotator=user)
        assert lease.comparison.is_gold
        picked = lease.comparison.candidate_a_id if correct else lease.comparison.candidate_b_id
        choice = "left" if lease.left_id == picked else "right"
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
    report = stats(api, bob)
    assert report["counts"]["gold_judgments"] == 2
    assert report["counts"]["judgments"] == report["counts"]["comparisons"] == 0
    assert report["agreement"]["pairwise"]["with_ties"] == {"agreement": None, "pairs": 0}
    assert report["models"]["win_rates"] == {}
    names = pseudonyms_for(project)
    by_name = {e["annotator"]: e for e in report["annotators"]}
    first, second = (by_name[names[user.pk]] for user in annotators[:2])
    assert (first["gold_answered"], first["gold_accuracy"]) == (1, 1.0)
    assert (second["gold_answered"], second["gold_accuracy"]) == (1, 0.0)
    assert first["judgments"] == 0
    assert first["position_bias"]["ci95"] is None


# -- filters and access --------------------------------------------------------------------------


def test_it_filters_by_batch(api, bob, project, annotators, import_rows):
    first = import_rows(prompt_line("a"))
    import_rows(prompt_line("b"))
    for comparison in Comparison.objects.order_by("id"):
        vote(project, annotators[0], comparison, "a")
    report = stats(api, bob, batch=first.pk)
    assert report["counts"]["judgments"] == 1
    assert report["counts"]["filters"] == {"batch": first.pk}
    assert stats(api, bob)["counts"]["judgments"] == 2


@pytest.mark.parametrize("value", ["x", "-1", "999999"])
def test_it_rejects_a_bad_batch(api, bob, project, value):
    response = api(bob).get(URL, {"batch": value})
    assert response.status_code == 400
    assert "batch" in response.json()


def test_it_rejects_another_projects_batch(api, alice, bob, project, import_rows):
    other = project_create(slug="other", name="Other", created_by=alice)
    foreign = import_rows(prompt_line("o"), target=other)
    response = api(bob).get(URL, {"batch": foreign.pk})
    assert response.status_code == 400
    assert response.json() == {"batch": ["No such batch in this project."]}


def test_it_lets_leads_and_staff_in(api, alice, bob, project):
    assert api(bob).get(URL).status_code == 200
    assert api(alice).get(URL).status_code == 200


def test_it_hides_the_project_from_annotators_and_strangers(api, annotators, charlie, project):
    assert api(annotators[0]).get(URL).status_code == 404
    assert api(charlie).get(URL).status_code == 404


def test_it_runs_a_fixed_number_of_queries(api, bob, judged, django_assert_num_queries):
    client = api(bob)
    client.get(URL)
    # The token and its user, the project, the pseudonyms, the votes in one query, the
    # honeypots' kinds (the `honeypots` section), what adaptive stopping saved
    # (stopping_report), the project's AI judges (none: `ai_judges` reads no vote then) and the
    # consistency probes answered (none: no pseudonyms read for them).
    with django_assert_num_queries(8):
        assert client.get(URL).status_code == 200
