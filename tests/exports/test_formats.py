"""The training formats, checked field by field on a tiny hand-built project.

Four comparisons of two candidates each (A is the prompt's first candidate), three votes each:
- `s-win`, a string prompt: A, A, B, so A wins 2/3;
- `conv`, a conversation: B, B, tie, so B wins 2/3;
- `s-tie`: tie, tie, A, a tie majority (no pair);
- `s-bad`: both bad, both bad, B, a both-bad majority (no pair; false rows in kto on request);
and a gold item (A, A, A) that no format exports.
"""

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.batches.models import Comparison
from apps.exports.formats import FORMATS, export_rows, hh_transcript
from apps.exports.options import Options
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line
from tests.exports.test_exports import URL, rows, vote

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Hello! Ask away."},
    {"role": "user", "content": "What is 2 + 2?"},
]
VOTES = {
    "s-win": ["a", "a", "b"],
    "conv": ["b", "b", "tie"],
    "s-tie": ["tie", "tie", "a"],
    "s-bad": ["both_bad", "both_bad", "b"],
    "gold": ["a", "a", "a"],
}


# The formats a pairwise project fills (listwise rows come from rankings: test_export_listwise).
PAIR_SOURCED = [name for name in FORMATS if name != "listwise"]


def vote_all(project, annotators, pick: Callable[[int, Comparison], str]) -> None:
    """Each annotator in turn judges all they are served (the queue picks the order), voting
    `pick(annotator's index, comparison)`: 'a', 'b', 'tie' or 'both_bad'."""
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            choice = pick(index, lease.comparison)
            if choice in ("a", "b"):
                wanted = getattr(lease.comparison, f"candidate_{choice}_id")
                choice = "left" if lease.left_id == wanted else "right"
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


@pytest.fixture
def tiny(project, annotators, import_rows) -> dict[str, Comparison]:
    import_rows(
        prompt_line("s-win"),
        prompt_line("conv", prompt=CONV),
        prompt_line("s-tie"),
        prompt_line("s-bad"),
        prompt_line("gold"),
    )
    by_prompt = {
        c.prompt.external_id: c
        for c in Comparison.objects.select_related("prompt", "candidate_a", "candidate_b")
    }
    vote_all(project, annotators, lambda index, c: VOTES[c.prompt.external_id][index])
    Comparison.objects.filter(prompt__external_id="gold").update(is_gold=True, gold_answer="a")
    return by_prompt


def export(api, bob, format: str, **params: str) -> list[dict]:
    return rows(api(bob).get(URL, {"format": format, **params}))


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def evidence(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}


def left_share(comparison: Comparison, chosen_id: int) -> float:
    """The share of the votes for `chosen_id` given with it shown on the left."""
    sides = [
        left == chosen_id
        for left in Judgment.objects.filter(comparison=comparison, chosen_id=chosen_id)
        .order_by("id")
        .values_list("left_id", flat=True)
    ]
    return round(sum(sides) / len(sides), 4)


def test_trl_implicit_puts_the_prompt_inside_whole_conversations(api, bob, tiny):
    win, conv = tiny["s-win"], tiny["conv"]
    exported = export(api, bob, "trl-implicit")
    assert [r["prompt_id"] for r in exported] == ["s-win", "conv"]
    first, second = exported
    assert list(first)[:2] == ["chosen", "rejected"]
    assert "prompt" not in first
    assert first["chosen"] == [user("What is 2 + 2?"), assistant(win.candidate_a.text)]
    assert first["rejected"] == [user("What is 2 + 2?"), assistant(win.candidate_b.text)]
    assert second["chosen"] == [*CONV, assistant(conv.candidate_b.text)]
    assert second["rejected"] == [*CONV, assistant(conv.candidate_a.text)]
    # The same evidence as trl, row for row.
    assert [evidence(r) for r in exported] == [evidence(r) for r in export(api, bob, "trl")]
    assert first["votes"] == {"chosen": 2, "rejected": 1, "tie": 0, "both_bad": 0}
    assert (first["n_annotators"], first["agreement"]) == (3, 0.6667)
    assert (first["chosen_id"], first["chosen_model"]) == ("c1", "model-1")


def test_kto_gives_the_winner_true_and_the_loser_false(api, bob, tiny):
    win, conv = tiny["s-win"], tiny["conv"]
    exported = export(api, bob, "kto")
    assert [(r["prompt_id"], r["candidate_id"], r["label"]) for r in exported] == [
        ("s-win", "c1", True),
        ("s-win", "c2", False),
        ("conv", "c2", True),
        ("conv", "c1", False),
    ]
    winner, loser, conv_winner, _ = exported
    assert winner == {
        "prompt": [user("What is 2 + 2?")],
        "completion": [assistant(win.candidate_a.text)],
        "label": True,
        "comparison_id": win.pk,
        "prompt_id": "s-win",
        "candidate_id": "c1",
        "model": "model-1",
        "votes": {"candidate": 2, "other": 1, "tie": 0, "both_bad": 0},
        "n_annotators": 3,
        "agreement": 0.6667,
        "unanimous": False,
        "annotators": winner["annotators"],
        "batch": win.batch_id,
        "chosen_position": left_share(win, win.candidate_a_id),
        "guideline_versions": [1],
        "votes_by_source": {"human": 3, "ai": 0},
    }
    assert len(set(winner["annotators"])) == 3
    assert (loser["completion"], loser["model"]) == ([assistant(win.candidate_b.text)], "model-2")
    assert loser["votes"] == {"candidate": 1, "other": 2, "tie": 0, "both_bad": 0}
    assert conv_winner["prompt"] == CONV
    assert conv_winner["completion"] == [assistant(conv.candidate_b.text)]
    assert conv_winner["votes"] == {"candidate": 2, "other": 0, "tie": 1, "both_bad": 0}


def test_kto_makes_both_bad_majorities_false_rows_on_request(api, bob, tiny):
    bad = tiny["s-bad"]
    assert len(export(api, bob, "kto", both_bad="exclude")) == 4
    exported = export(api, bob, "kto", both_bad="include")
    assert len(exported) == 6
    first, second = exported[4:]
    assert [(r["prompt_id"], r["candidate_id"], r["label"]) for r in exported[4:]] == [
        ("s-bad", "c1", False),
        ("s-bad", "c2", False),
    ]
    assert first["completion"] == [assistant(bad.candidate_a.text)]
    assert first["votes"] == {"candidate": 0, "other": 1, "tie": 0, "both_bad": 2}
    assert second["votes"] == {"candidate": 1, "other": 0, "tie": 0, "both_bad": 2}
    assert first["agreement"] == second["agreement"] == 0.6667


def test_hh_rlhf_writes_human_and_assistant_transcripts(api, bob, tiny):
    win, conv = tiny["s-win"], tiny["conv"]
    first, second = export(api, bob, "hh-rlhf")
    assert first["chosen"] == f"\n\nHuman: What is 2 + 2?\n\nAssistant: {win.candidate_a.text}"
    assert first["rejected"] == f"\n\nHuman: What is 2 + 2?\n\nAssistant: {win.candidate_b.text}"
    # The system message opens the first Human turn.
    assert second["chosen"] == (
        "\n\nHuman: Be brief.\n\nHi?\n\nAssistant: Hello! Ask away.\n\nHuman: What is 2 + 2?"
        f"\n\nAssistant: {conv.candidate_b.text}"
    )
    assert second["rejected"].endswith(f"2 + 2?\n\nAssistant: {conv.candidate_a.text}")
    assert evidence(second) == evidence(export(api, bob, "trl")[1])


def test_hh_transcripts_give_tool_turns_to_the_human_and_the_response_its_own_turn():
    prompt = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Calling."},
        {"role": "tool", "content": "12C"},
        {"role": "assistant", "content": "It is"},
    ]
    assert hh_transcript(prompt, "12C.") == (
        "\n\nHuman: Weather?\n\nAssistant: Calling.\n\nHuman: 12C\n\nAssistant: It is"
        "\n\nAssistant: 12C."
    )


def test_openai_rows_have_exactly_the_preference_fine_tuning_fields(api, bob, tiny):
    win, conv = tiny["s-win"], tiny["conv"]
    first, second = export(api, bob, "openai")
    assert first == {
        "input": {"messages": [user("What is 2 + 2?")]},
        "preferred_output": [assistant(win.candidate_a.text)],
        "non_preferred_output": [assistant(win.candidate_b.text)],
    }
    assert second == {
        "input": {"messages": CONV},
        "preferred_output": [assistant(conv.candidate_b.text)],
        "non_preferred_output": [assistant(conv.candidate_a.text)],
    }
    # Its evidence is the trl export's, row for row.
    trl = export(api, bob, "trl")
    assert [r["chosen_id"] for r in trl] == ["c1", "c2"]
    assert trl[0]["chosen"] == first["preferred_output"]
    assert trl[1]["chosen"] == second["preferred_output"]


def test_arena_has_one_row_per_vote(api, bob, annotators, tiny):
    win, conv = tiny["s-win"], tiny["conv"]
    exported = export(api, bob, "arena")
    assert [(r["question_id"], r["winner"]) for r in exported] == [
        ("s-win", "model_a"),
        ("s-win", "model_a"),
        ("s-win", "model_b"),
        ("conv", "model_b"),
        ("conv", "model_b"),
        ("conv", "tie"),
        ("s-tie", "tie"),
        ("s-tie", "tie"),
        ("s-tie", "model_a"),
        ("s-bad", "tie (bothbad)"),
        ("s-bad", "tie (bothbad)"),
        ("s-bad", "model_b"),
    ]
    first = exported[0]
    judgment = Judgment.objects.filter(comparison=win).order_by("id").first()
    assert first == {
        "question_id": "s-win",
        "comparison_id": win.pk,
        "model_a": "model-1",
        "model_b": "model-2",
        "winner": "model_a",
        "judge": first["judge"],
        "anony": True,
        "turn": 1,
        "conversation_a": [user("What is 2 + 2?"), assistant(win.candidate_a.text)],
        "conversation_b": [user("What is 2 + 2?"), assistant(win.candidate_b.text)],
        "tstamp": judgment.created_at.timestamp(),
        "source": "human",
    }
    assert exported[3]["conversation_b"] == [*CONV, assistant(conv.candidate_b.text)]
    assert exported[3]["turn"] == 2  # two user messages
    judges = [r["judge"] for r in exported[:3]]
    assert len(set(judges)) == 3
    assert judges == [r["judge"] for r in exported[3:6]]
    assert not {u.username for u in annotators} & set(judges)
    assert set(judges) <= set(export(api, bob, "trl")[0]["annotators"])


def test_arena_leaves_ties_and_both_bad_out_on_request(api, bob, tiny):
    exported = export(api, bob, "arena", include_ties="false")
    assert [(r["question_id"], r["winner"]) for r in exported] == [
        ("s-win", "model_a"),
        ("s-win", "model_a"),
        ("s-win", "model_b"),
        ("conv", "model_b"),
        ("conv", "model_b"),
        ("s-tie", "model_a"),
        ("s-bad", "model_b"),
    ]
    assert len(export(api, bob, "arena", include_ties="true")) == 12


@pytest.mark.parametrize("format", PAIR_SOURCED)
def test_two_exports_of_the_same_data_are_byte_identical(api, bob, tiny, format):
    def raw() -> bytes:
        response = api(bob).get(URL, {"format": format})
        assert response.status_code == 200
        return b"".join(response.streaming_content)

    first = raw()
    assert first
    assert raw() == first


@pytest.mark.parametrize("format", PAIR_SOURCED)
def test_every_format_filters_by_batch(api, bob, project, annotators, import_rows, format):
    first = import_rows(prompt_line("a"))
    import_rows(prompt_line("b"))
    for comparison in Comparison.objects.order_by("id"):
        vote(project, annotators[0], comparison, "a")
    exported = export(api, bob, format, batch=str(first.pk))
    assert len(exported) == (2 if format == "kto" else 1)
    assert "b" not in {r.get("prompt_id", r.get("question_id")) for r in exported}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"format": "kto", "both_bad": "maybe"}, "both_bad"),
        ({"format": "kto", "both_bad": ""}, "both_bad"),
        ({"format": "arena", "include_ties": "maybe"}, "include_ties"),
        ({"format": "arena", "include_ties": "1"}, "include_ties"),
        ({"format": "trl", "both_bad": "include"}, "both_bad"),
        ({"format": "hh-rlhf", "include_ties": "false"}, "include_ties"),
        ({"format": "openai", "colour": "blue"}, "colour"),
        ({"format": "arena", "batch": "-1"}, "batch"),
        ({"format": "trl-implicit "}, "format"),
    ],
)
def test_bad_parameters_get_a_400_naming_them(api, bob, project, params, named):
    response = api(bob).get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == [named]


@pytest.mark.parametrize("format", PAIR_SOURCED)
def test_an_export_runs_the_same_queries_for_few_rows_and_many(
    project, annotators, import_rows, format
):
    """No query per row: what a format reads comes in chunks, so a bigger project costs no more
    statements (until it passes a chunk)."""

    def statements() -> int:
        options = Options(both_bad=True)
        with CaptureQueriesContext(connection) as captured:
            exported = list(export_rows(project=project, format=format, options=options))
        assert exported
        return len(captured)

    import_rows(prompt_line("first", n=3))
    vote_all(project, annotators, lambda index, _: ["a", "a", "both_bad"][index])
    few = statements()
    import_rows(*(prompt_line(f"more-{i}", n=3, prompt=CONV) for i in range(3)))
    vote_all(project, annotators, lambda index, _: ["a", "a", "both_bad"][index])
    assert statements() == few
