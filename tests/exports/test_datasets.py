"""A TRL export loads with Hugging Face `datasets`, as a training team would load it."""

import pytest

from apps.batches.models import Comparison
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line

datasets = pytest.importorskip(
    "datasets", reason="datasets is a dev dependency: pip install .[dev]"
)


def test_datasets_loads_a_trl_export(
    api, bob, project, annotators, import_rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import_rows(prompt_line("plain", n=3))
    for user in annotators:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    response = api(bob).get("/api/v1/projects/demo/export/", {"format": "trl"})
    path = tmp_path / "demo-trl.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    exported = Comparison.objects.count()
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert dataset.num_rows <= exported
    assert {"prompt", "chosen", "rejected", "votes", "agreement"} <= set(dataset.column_names)
    for row in dataset:
        # The conversational form by default: the string prompt as one user message.
        assert row["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
        assert [m["role"] for m in row["chosen"]] == ["assistant"]
        assert row["votes"]["chosen"] > row["votes"]["rejected"]
    # For a base model, prompt_form=text: strings, the response after the prompt's end.
    response = api(bob).get(
        "/api/v1/projects/demo/export/", {"format": "trl", "prompt_form": "text"}
    )
    path.write_bytes(b"".join(response.streaming_content))
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache-text")
    )
    for row in dataset:
        assert row["prompt"] == "\n\nHuman: What is 2 + 2?\n\nAssistant:"
        assert isinstance(row["chosen"], str) and row["chosen"].startswith(" Answer ")


def test_datasets_loads_a_conversational_trl_export(
    api, bob, project, annotators, import_rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    import_rows(prompt_line("conv", prompt=messages))
    lease = assignment_next(project=project, annotator=annotators[0])
    judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="right")
    response = api(bob).get("/api/v1/projects/demo/export/", {"format": "trl"})
    path = tmp_path / "conv.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    (row,) = list(dataset)
    assert row["prompt"] == messages
    assert row["chosen"] == [{"role": "assistant", "content": lease.right.text}]


def _vote_everything(project, annotators, choices: list[str]) -> None:
    """Each annotator in turn votes `choices[i]` ('a', 'b', 'tie', 'both_bad') on everything."""
    for user, choice in zip(annotators, choices, strict=False):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            side = choice
            if choice in ("a", "b"):
                wanted = getattr(lease.comparison, f"candidate_{choice}_id")
                side = "left" if lease.left_id == wanted else "right"
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=side)


def _load(api, bob, tmp_path, format: str, **params: str):
    response = api(bob).get("/api/v1/projects/demo/export/", {"format": format, **params})
    assert response.status_code == 200
    path = tmp_path / f"demo-{format}.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    return datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
EVIDENCE = {
    "comparison_id",
    "prompt_id",
    "chosen_id",
    "rejected_id",
    "chosen_model",
    "rejected_model",
    "votes",
    "n_annotators",
    "unanimous",
    "agreement",
    "annotators",
    "batch",
    # Not strength_mean and margin (graded projects only), nor label_confidence (reliability).
    "chosen_position",
    "guideline_versions",
    "votes_by_source",
}


def _is_conversation(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in value)
    )


@pytest.mark.parametrize(
    ("format", "columns"),
    [
        ("trl-implicit", {"chosen", "rejected"} | EVIDENCE),
        ("hh-rlhf", {"chosen", "rejected"} | EVIDENCE),
        ("openai", {"input", "preferred_output", "non_preferred_output"}),
        (
            "arena",
            {"model_a", "model_b", "conversation_a", "conversation_b", "winner", "judge"}
            | {"question_id", "comparison_id", "tstamp", "anony", "turn", "source"},
        ),
    ],
)
def test_datasets_loads_the_formats_that_mix_strings_and_conversations(
    api, bob, project, annotators, import_rows, tmp_path, monkeypatch, format, columns
):
    """These formats write a string prompt as a conversation too, so one file is one table."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import_rows(prompt_line("plain"), prompt_line("conv", prompt=MESSAGES))
    _vote_everything(project, annotators, ["a", "a", "tie"])
    dataset = _load(api, bob, tmp_path, format)
    assert set(dataset.column_names) == columns
    assert dataset.num_rows == (6 if format == "arena" else 2)
    for row in dataset:
        if format == "trl-implicit":
            assert _is_conversation(row["chosen"]) and _is_conversation(row["rejected"])
            assert row["chosen"][-1]["role"] == "assistant"
            assert isinstance(row["agreement"], float) and isinstance(row["votes"], dict)
        elif format == "hh-rlhf":
            assert row["chosen"].startswith("\n\nHuman: ")
            assert "\n\nAssistant: " in row["rejected"]
        elif format == "openai":
            assert _is_conversation(row["input"]["messages"])
            assert len(row["preferred_output"]) == len(row["non_preferred_output"]) == 1
        else:
            assert _is_conversation(row["conversation_a"])
            assert row["winner"] in ("model_a", "model_b", "tie", "tie (bothbad)")
            assert isinstance(row["tstamp"], float) and isinstance(row["judge"], str)


@pytest.mark.parametrize("conversational", [False, True])
def test_datasets_loads_a_kto_export(
    api, bob, project, annotators, import_rows, tmp_path, monkeypatch, conversational
):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    prompt = MESSAGES if conversational else "Hi"
    import_rows(prompt_line("p", prompt=prompt))
    _vote_everything(project, annotators, ["a", "a", "b"])
    import_rows(prompt_line("q", prompt=prompt))
    _vote_everything(project, annotators, ["both_bad", "both_bad", "b"])
    form = "conversational" if conversational else "text"
    dataset = _load(api, bob, tmp_path, "kto", both_bad="include", prompt_form=form)
    assert {"prompt", "completion", "label", "candidate_id", "model"} <= set(dataset.column_names)
    assert dataset.features["label"].dtype == "bool"
    assert [(row["prompt_id"], row["label"]) for row in dataset] == [
        ("p", True),
        ("p", False),
        ("q", False),
        ("q", False),
    ]
    for row in dataset:
        if conversational:
            assert row["prompt"] == MESSAGES
            assert _is_conversation(row["completion"]) and len(row["completion"]) == 1
        else:
            assert row["prompt"] == "\n\nHuman: Hi\n\nAssistant:"
            assert isinstance(row["completion"], str) and row["completion"].startswith(" ")
