"""`aggregate=reliability` on the overall choice: the crowd model's labels, through the export.

Planted annotators judge through the queue, as bench/quality.py has them do over HTTP: honest
ones by a true Bradley-Terry model of the responses' models, an always-left clicker and a
random one. The truth of a comparison is its stronger model.
"""

import math
import random
from typing import Any

import numpy as np
import pytest

from apps.agreement.crowd import CrowdVotes, fit_crowd
from apps.agreement.stats import stats_votes
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.services import membership_add
from tests.exports.test_aggregation import export
from tests.exports.test_exports import URL

STRENGTHS = {f"model-{i + 1}": -1.5 + 3 * i / 5 for i in range(6)}
KINDS = ("honest", "honest", "honest", "honest", "always_left", "random")


def lines(prompts: int, rng: random.Random, *, named: bool = True) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(prompts):
        first, second = rng.sample(sorted(STRENGTHS), 2)
        out.append(
            {
                "id": f"q{i:03d}",
                "prompt": f"Question {i}?",
                "candidates": [
                    {"id": "c1", "text": f"One to {i}", **({"model": first} if named else {})},
                    {"id": "c2", "text": f"Two to {i}", **({"model": second} if named else {})},
                ],
            }
        )
    return out


def plant(project, make_user, rng: random.Random) -> None:
    """The planted annotators in turn, one judgment each, until none gets work."""
    people = []
    for index, kind in enumerate(KINDS):
        user = make_user(f"{kind}-{index}")
        membership_add(project=project, user=user, role="annotator")
        people.append((user, kind))
    busy = True
    while busy:
        busy = False
        for user, kind in people:
            lease = assignment_next(project=project, annotator=user)
            if lease is None:
                continue
            busy = True
            left = STRENGTHS.get(lease.left.model, 0.0)
            right = STRENGTHS.get(lease.right.model, 0.0)
            if kind == "always_left":
                choice = "left"
            elif kind == "random":
                choice = rng.choice(("left", "right"))
            else:
                choice = "left" if rng.random() < 1 / (1 + math.exp(right - left)) else "right"
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


def truly_right(rows: list[dict[str, Any]]) -> float:
    right = sum(STRENGTHS[r["chosen_model"]] > STRENGTHS[r["rejected_model"]] for r in rows)
    return right / len(rows)


@pytest.fixture
def planted(project, make_user, import_rows):
    """60 prompts, 3 votes each, from the planted annotators (the fixture's three have none)."""
    rng = random.Random(13)
    import_rows(*lines(60, rng))
    plant(project, make_user, rng)
    return project


def test_reliability_is_right_more_often_than_majority_at_equal_rows(api, bob, planted):
    majority = export(api, bob, aggregate="majority")
    reliable = export(api, bob, aggregate="reliability")
    # As bench/quality.py compares them: each aggregation's most confident rows, as many.
    majority.sort(key=lambda r: (-r["agreement"], -r["n_annotators"], r["comparison_id"]))
    reliable.sort(key=lambda r: (-r["label_confidence"], r["comparison_id"]))
    n = min(len(majority), len(reliable))
    assert n >= 40
    # At least 5 points (3 rows of 60 is exactly 0.05: compared with a rounding margin).
    assert truly_right(reliable[:n]) >= truly_right(majority[:n]) + 0.05 - 1e-9
    assert all(0.5 <= r["label_confidence"] <= 1 for r in reliable)


def test_the_rows_are_the_crowd_models_posterior(api, bob, planted):
    fit = fit_crowd(CrowdVotes.of_columns(stats_votes(project=planted)), truth="vote")
    at = {int(c): i for i, c in enumerate(fit.comparison_ids)}
    reliable = export(api, bob, aggregate="reliability")
    assert len(reliable) == len(fit.comparison_ids)  # every comparison has a sided vote
    for row in reliable:
        a, b = fit.posterior[at[row["comparison_id"]], :2]
        assert row["chosen_id"] == ("c1" if a > b else "c2")
        assert row["label_confidence"] == round(max(a, b) / (a + b), 4)
    card = api(bob).get(URL, {"format": "card", "aggregate": "reliability"})
    text = card.content.decode()
    assert "- Reliability fit: Crowd model, vote-level" in text
    assert f"fitted to {int(fit.votes.sum())} votes." in text


def test_without_named_models_the_fit_is_comparison_level(
    api, bob, project, make_user, import_rows
):
    rng = random.Random(5)
    import_rows(*lines(20, rng, named=False))
    plant(project, make_user, rng)
    fit = fit_crowd(CrowdVotes.of_columns(stats_votes(project=project)), truth="comparison")
    reliable = export(api, bob, aggregate="reliability")
    expected = {
        int(c): ("c1" if p[0] > p[1] else "c2")
        for c, p in zip(fit.comparison_ids, fit.posterior, strict=True)
        if not np.isclose(p[0], p[1])
    }
    assert {r["comparison_id"]: r["chosen_id"] for r in reliable} == expected
    text = api(bob).get(URL, {"format": "card", "aggregate": "reliability"})
    assert "- Reliability fit: Crowd model, comparison-level" in text.content.decode()
