"""Exports: the TRL and raw judgment formats, streamed, with agreement and pseudonyms."""

import json

import pytest

from apps.batches.models import Comparison
from apps.judging.models import Assignment, Judgment
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line

URL = "/api/v1/projects/demo/export/"


def vote(project, user, comparison: Comparison, choice: str) -> None:
    """Judge `comparison` as `user`, where choice is 'a', 'b', 'tie' or 'both_bad'."""
    lease = assignment_next(project=project, annotator=user)
    assert lease is not None
    assert lease.comparison_id == comparison.pk
    if choice in ("a", "b"):
        wanted = comparison.candidate_a_id if choice == "a" else comparison.candidate_b_id
        choice = "left" if lease.left_id == wanted else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/jsonl"
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def one(project, import_rows) -> Comparison:
    import_rows(prompt_line("p-1"))
    return Comparison.objects.get()


@pytest.mark.parametrize(
    ("votes", "winner"),
    [
        (["a", "a", "b"], "a"),
        (["b", "b", "b"], "b"),
        (["a", "tie", "tie"], None),
        (["a", "b", "tie"], None),
        (["a", "b"], None),
        (["a", "tie"], None),
        (["a"], "a"),
        (["both_bad", "both_bad", "a"], None),
        (["a", "both_bad", "tie"], None),
    ],
)
def test_trl_exports_only_a_strict_winning_side(api, bob, project, annotators, one, votes, winner):
    for user, choice in zip(annotators, votes, strict=False):
        vote(project, user, one, choice)
    exported = rows(api(bob).get(URL, {"format": "trl"}))
    if winner is None:
        assert exported == []
        return
    (row,) = exported
    chosen = one.candidate_a if winner == "a" else one.candidate_b
    rejected = one.candidate_b if winner == "a" else one.candidate_a
    assert list(row)[:3] == ["prompt", "chosen", "rejected"]
    # The conversational form by default: a string prompt is one user message.
    assert row["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert (row["chosen"], row["rejected"]) == (
        [{"role": "assistant", "content": chosen.text}],
        [{"role": "assistant", "content": rejected.text}],
    )
    assert (row["chosen_id"], row["rejected_id"]) == (chosen.external_id, rejected.external_id)
    assert (row["chosen_model"], row["rejected_model"]) == (chosen.model, rejected.model)
    n_win = votes.count(winner)
    n_lose = votes.count("b" if winner == "a" else "a")
    assert row["votes"] == {
        "chosen": n_win,
        "rejected": n_lose,
        "tie": votes.count("tie"),
        "both_bad": votes.count("both_bad"),
    }
    assert row["n_annotators"] == len(votes)
    assert row["agreement"] == round(n_win / len(votes), 4)
    assert row["comparison_id"] == one.pk
    assert row["prompt_id"] == "p-1"
    assert row["batch"] == one.batch_id
    assert len(row["annotators"]) == len(votes)


def test_trl_uses_message_lists_for_conversations(api, bob, project, annotators, import_rows):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
    ]
    import_rows(prompt_line("conv", prompt=messages))
    comparison = Comparison.objects.get()
    vote(project, annotators[0], comparison, "b")
    (row,) = rows(api(bob).get(URL, {"format": "trl"}))
    assert row["prompt"] == messages
    assert row["chosen"] == [{"role": "assistant", "content": comparison.candidate_b.text}]
    assert row["rejected"] == [{"role": "assistant", "content": comparison.candidate_a.text}]


def test_judgments_has_one_row_per_vote_with_every_field(api, bob, project, annotators, one):
    vote(project, annotators[0], one, "a")
    vote(project, annotators[1], one, "tie")
    exported = rows(api(bob).get(URL, {"format": "judgments"}))
    assert [r["choice"] in ("left", "right") for r in exported] == [True, False]
    first = exported[0]
    assert set(first) == {
        "comparison_id",
        "prompt_id",
        "annotator",
        "left_id",
        "right_id",
        "choice",
        "chosen_id",
        "rationale",
        "duration_ms",
        "created_at",
        "candidate_a_id",
        "strength",
        "criteria",
        "flags",
        "ranking",
        "guideline_version",
        "gold",
        "degradation",
        "source",
    }
    assert (first["gold"], first["degradation"]) == (False, "")
    assert first["source"] == "human"
    assert first["chosen_id"] == one.candidate_a.external_id
    assert exported[1]["chosen_id"] is None
    lease = Assignment.objects.get(annotator=annotators[0])
    assert (first["left_id"], first["right_id"]) == (
        lease.left.external_id,
        lease.right.external_id,
    )


def test_exports_name_annotators_by_stable_pseudonyms(api, bob, project, annotators, one):
    for user in annotators:
        vote(project, user, one, "a")
    raw = b"".join(api(bob).get(URL, {"format": "judgments"}).streaming_content).decode()
    for user in annotators:
        assert f'"{user.username}"' not in raw
    first = [r["annotator"] for r in rows(api(bob).get(URL, {"format": "judgments"}))]
    again = rows(api(bob).get(URL, {"format": "trl"}))[0]["annotators"]
    assert len(set(first)) == 3
    assert sorted(first) == sorted(again)


def test_exports_filter_by_batch(api, bob, project, annotators, import_rows):
    first = import_rows(prompt_line("a"))
    import_rows(prompt_line("b"))
    for comparison in Comparison.objects.order_by("id"):
        vote(project, annotators[0], comparison, "a")
    exported = rows(api(bob).get(URL, {"format": "trl", "batch": first.pk}))
    assert [r["prompt_id"] for r in exported] == ["a"]


def test_judgments_rows_come_in_judgment_id_order(api, bob, project, annotators, import_rows):
    """As the README says: `judgments` by judgment id (the keyset its pages and the API's
    cursor read), unlike the pairwise formats and `arena`, which go by comparison."""
    import_rows(prompt_line("a"), prompt_line("b"))
    for user in annotators[:2]:
        for _ in range(2):
            lease = assignment_next(project=project, annotator=user)
            assert lease is not None
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    exported = [r["comparison_id"] for r in rows(api(bob).get(URL, {"format": "judgments"}))]
    assert exported == list(Judgment.objects.order_by("id").values_list("comparison_id", flat=True))
    # Each annotator judged both comparisons in turn: by comparison, the order would differ.
    assert exported != sorted(exported)


@pytest.mark.parametrize("params", [{"format": "csv"}, {"format": "trl", "batch": "x"}])
def test_exports_reject_bad_parameters(api, bob, project, params):
    response = api(bob).get(URL, params)
    assert response.status_code == 400


@pytest.mark.parametrize("who", ["ann", "charlie", None])
def test_exports_are_for_staff_and_leads_only(api, project, annotators, charlie, who):
    user = {"ann": annotators[0], "charlie": charlie, None: None}[who]
    assert api(user).get(URL, {"format": "trl"}).status_code in (401, 403, 404)


def test_staff_may_export_any_project(api, alice, project, annotators, one):
    vote(project, annotators[0], one, "a")
    assert len(rows(api(alice).get(URL, {"format": "trl"}))) == 1


def test_the_default_format_is_trl(api, bob, project, annotators, one):
    vote(project, annotators[0], one, "a")
    (row,) = rows(api(bob).get(URL))
    assert "chosen" in row


def test_the_judgments_export_carries_every_answer_and_rankings_become_trl_pairs(
    api, bob, project, annotators, import_rows
):
    """Graded strength and criteria oriented to candidate A, flags and the guideline version;
    a listwise project's rankings as response ids, and TRL pairs made from them (the tied pair
    makes none)."""
    from apps.judging.queue import assignment_next, judgment_submit

    project.scheme = "graded"
    project.criteria = [{"name": "honesty", "description": ""}]
    project.flags = ["factual error"]
    project.save()
    import_rows(prompt_line("g-1"))
    user = annotators[0]
    lease = assignment_next(project=project, annotator=user)
    judgment_submit(
        assignment_id=lease.pk,
        annotator=user,
        strength=-2,
        criteria={"honesty": 1},
        flags=["factual error"],
    )
    left_is_a = lease.left_id == lease.comparison.candidate_a_id
    flip = -1 if left_is_a else 1
    (row,) = rows(api(bob).get(URL, {"format": "judgments"}))
    assert row["strength"] == -2 * flip
    assert row["criteria"] == {
        "honesty": {"option": "a" if flip == 1 else "b", "strength": 1 * flip}
    }
    assert (row["flags"], row["guideline_version"], row["ranking"]) == (["factual error"], 1, None)
    assert row["candidate_a_id"] == "c1"

    project.scheme = "listwise"
    project.criteria = []
    project.save()
    from apps.batches.models import Comparison

    Comparison.objects.update(complete=True)
    import_rows(prompt_line("l-1", n=3))
    lease = assignment_next(project=project, annotator=user)
    shown = [c.external_id for c in lease.shown]
    judgment_submit(assignment_id=lease.pk, annotator=user, ranking=[shown[1], shown[::2]])
    ranked = [r for r in rows(api(bob).get(URL, {"format": "judgments"})) if r["ranking"]]
    assert ranked[0]["ranking"] == [[shown[1]], shown[::2]]
    assert ranked[0]["choice"] == "ranking"
    trl = rows(api(bob).get(URL, {"format": "trl"}))
    pairs = [(r["chosen_id"], r["rejected_id"]) for r in trl if r["prompt_id"] == "l-1"]
    assert sorted(pairs) == sorted([(shown[1], shown[0]), (shown[1], shown[2])])


def test_graded_votes_give_each_pair_its_mean_strength_and_llama2_margin(
    api, bob, project, annotators, import_rows
):
    """Strengths +3, +2 and -1 for candidate A: A wins 2-1; strength toward it (3+2-1)/3, and
    the margin the mean of Llama 2's 1, 2/3 and -1/3."""
    project.scheme = "graded"
    project.save()
    import_rows(prompt_line("g"))
    for user, toward_a in zip(annotators, [3, 2, -1], strict=True):
        lease = assignment_next(project=project, annotator=user)
        left_is_a = lease.left_id == lease.comparison.candidate_a_id
        judgment_submit(
            assignment_id=lease.pk, annotator=user, strength=-toward_a if left_is_a else toward_a
        )
    (row,) = rows(api(bob).get(URL, {"format": "trl"}))
    assert row["chosen_id"] == "c1"
    assert row["strength_mean"] == round(4 / 3, 4)
    assert row["margin"] == round((1 + 2 / 3 - 1 / 3) / 3, 4)
    (pairwise,) = [r for r in rows(api(bob).get(URL, {"format": "hh-rlhf"}))]
    assert pairwise["margin"] == row["margin"]


def test_pairwise_exports_filter_by_votes_and_agreement(api, bob, project, annotators, import_rows):
    """Three comparisons: 3 votes 3-0, 3 votes 2-1, 2 votes 2-0 (overlap 3)."""
    import_rows(prompt_line("full"), prompt_line("split"), prompt_line("two"))
    plan = {"full": ["a", "a", "a"], "split": ["a", "a", "b"], "two": ["a", "a"]}
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            pid = lease.comparison.prompt.external_id
            if index >= len(plan[pid]):
                from apps.judging.queue import assignment_skip

                assignment_skip(assignment_id=lease.pk, annotator=user, reason="other", note="-")
                continue
            wants_a = plan[pid][index] == "a"
            left_is_a = lease.left_id == lease.comparison.candidate_a_id
            choice = "left" if wants_a == left_is_a else "right"
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)

    def ids(**params):
        return sorted(r["prompt_id"] for r in rows(api(bob).get(URL, {"format": "trl", **params})))

    assert ids() == ["full", "split", "two"]
    assert ids(min_votes="3") == ["full", "split"]
    assert ids(min_agreement="0.9") == ["full", "two"]
    assert ids(min_votes="3", min_agreement="0.9") == ["full"]
    for format in ("trl-implicit", "hh-rlhf", "openai", "kto"):
        response = api(bob).get(URL, {"format": format, "min_votes": "3", "min_agreement": "1"})
        assert response.status_code == 200
        assert len(rows(response)) == (2 if format == "kto" else 1)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"min_votes": "0"}, "min_votes"),
        ({"min_votes": "many"}, "min_votes"),
        ({"min_agreement": "1.5"}, "min_agreement"),
        ({"min_agreement": "nan"}, "min_agreement"),
        ({"format": "judgments", "min_votes": "2"}, "min_votes"),
    ],
)
def test_bad_filters_get_a_400_naming_them(api, bob, batch, params, name):
    response = api(bob).get(URL, {"format": "trl", **params})
    assert response.status_code == 400
    assert name in response.json()


def test_split_puts_each_prompt_in_one_half_the_same_way_every_time(
    api, bob, project, annotators, import_rows
):
    from apps.exports.selectors import split_of

    import_rows(*(prompt_line(f"s{i}", n=3) for i in range(40)))  # 3 comparisons each
    project.overlap = 1
    project.save()
    user = annotators[0]
    while (lease := assignment_next(project=project, annotator=user)) is not None:
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")

    def prompts(**params):
        response = api(bob).get(URL, {"format": "trl", **params})
        assert response.status_code == 200
        return [r["prompt_id"] for r in rows(response)]

    everything = prompts()
    train, test = (
        prompts(split="train", test_fraction="0.3"),
        prompts(split="test", test_fraction="0.3"),
    )
    assert sorted(train + test) == sorted(everything)
    assert not set(train) & set(test)  # no prompt in both halves
    assert 0 < len(set(test)) < len(set(everything))
    assert all(split_of(project.slug, p, 0.3) == "test" for p in test)
    assert prompts(split="test", test_fraction="0.3") == test  # the same every time
    assert prompts(split="test", test_fraction="0") == []
    assert api(bob).get(URL, {"format": "trl", "split": "dev"}).status_code == 400


def test_judgments_times_are_written_as_python_writes_them(api, bob, project, annotators, one):
    """created_at is formatted by PostgreSQL on PostgreSQL: it must read as isoformat() does,
    with and without a fraction of a second, whatever the session's time zone."""
    from datetime import UTC, datetime, timedelta, timezone

    for user, choice in zip(annotators, ["a", "b", "tie"], strict=True):
        vote(project, user, one, choice)
    moments = [
        datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 12, 0, 0, 5, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    ]
    for judgment, moment in zip(Judgment.objects.order_by("id"), moments, strict=True):
        judgment.created_at = moment
        judgment.save(update_fields=["created_at"])
    written = [row["created_at"] for row in rows(api(bob).get(URL, {"format": "judgments"}))]
    assert written == [m.astimezone(UTC).isoformat() for m in moments]
    assert written[1] == "2026-11-01T12:00:00.000005+00:00"
