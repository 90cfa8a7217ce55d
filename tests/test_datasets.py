"""A TRL export loads with Hugging Face `datasets`, as a training team would load it."""

import pytest

from apps.batches.models import Comparison
from apps.judging.services import assignment_next, judgment_submit
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
        assert isinstance(row["prompt"], str) and isinstance(row["chosen"], str)
        assert row["votes"]["chosen"] > row["votes"]["rejected"]


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
