"""Background exports (POST .../exports/): the job, its file, its card, who may see them, expiry
and recovery. Celery is eager here (the job runs during the POST); tests/exports/test_worker.py
runs them in a real worker process on PostgreSQL and Redis."""

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from apps.audit.models import AuditAction, AuditEvent
from apps.exports.jobs import (
    Superseded,
    _finish,
    _Run,
    export_job_claim,
    export_job_run,
    export_jobs_sweep,
)
from apps.exports.models import ExportJob, ExportStatus
from apps.exports.parquet import schema_for
from apps.exports.selectors import Shape
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.services import membership_add, project_create
from tests.conftest import prompt_line

datasets = pytest.importorskip(
    "datasets", reason="datasets is a dev dependency: pip install .[dev]"
)

JOBS = "/api/v1/projects/demo/exports/"
STREAM = "/api/v1/projects/demo/export/"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

# Each format with parameters that change its rows, so that they are seen to be applied.
CASES = [
    ("trl", {"min_votes": "2"}),
    ("trl-implicit", {}),
    ("kto", {"both_bad": "include"}),
    ("hh-rlhf", {"split": "train", "test_fraction": "0.5"}),
    ("openai", {}),
    ("arena", {"include_ties": "false"}),
    ("judgments", {}),
]


@pytest.fixture(autouse=True)
def export_root(settings, tmp_path, monkeypatch) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return settings.EXPORT_ROOT


def _vote(project, user, choice=None, **answer) -> None:
    """`user` judges everything left for them: `choice` 'a'/'b' by candidate, or as given."""
    while (lease := assignment_next(project=project, annotator=user)) is not None:
        side = choice
        if choice in ("a", "b"):
            wanted = getattr(lease.comparison, f"candidate_{choice}_id")
            side = "left" if lease.left_id == wanted else "right"
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=side, **answer)


@pytest.fixture
def voted(project, annotators, import_rows):
    """String prompts judged a, a, b (a winner everywhere), with flags, a rationale, criteria;
    and one prompt judged both bad by the majority (for kto's both_bad)."""
    project.criteria = [{"name": "honesty", "description": ""}]
    project.flags = ["factual error"]
    project.save()
    import_rows(*(prompt_line(f"p-{i}", prompt=f"Question {i}?", n=3) for i in range(4)))
    for user, choice in zip(annotators, ["a", "a", "tie"], strict=True):
        _vote(
            project,
            user,
            choice,
            criteria={"honesty": "left"},
            flags=["factual error"] if choice == "tie" else [],
            rationale=f"{user.username} says {choice}",
            duration_ms=1200,
        )
    import_rows(prompt_line("bad", prompt="Both bad?"))
    for user, choice in zip(annotators, ["both_bad", "both_bad", "a"], strict=True):
        _vote(project, user, choice, criteria={"honesty": "tie"})
    return project


def _post(client, **body):
    return client.post(JOBS, body, format="json")


def _streamed(client, format, params) -> bytes:
    response = client.get(STREAM, {"format": format, **params})
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def _download(client, job) -> bytes:
    response = client.get(job["download"])
    assert response.status_code == 200, getattr(response, "content", b"")
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(("format", "params"), CASES)
def test_a_background_jsonl_file_is_the_streamed_export_byte_for_byte(
    api, bob, voted, format, params
):
    client = api(bob)
    response = _post(client, format=format, file_format="jsonl", **params)
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "done", job
    assert response["Location"] == job["url"]
    assert job["parameters"] == params
    data = _download(client, job)
    assert data == _streamed(client, format, params)
    assert data  # every case has rows
    assert job["rows_written"] == len(data.splitlines())
    assert job["file_size"] == len(data)
    import hashlib

    assert job["sha256"] == hashlib.sha256(data).hexdigest()
    assert job["percent"] == 100.0


def test_the_download_is_an_attachment_of_the_right_type(api, bob, voted):
    client = api(bob)
    job = _post(client, format="trl", file_format="parquet").json()
    response = client.get(job["download"])
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == (
        f'attachment; filename="demo-trl-{job["id"]}.parquet"'
    )
    jsonl = client.get(_post(client, format="arena").json()["download"])
    assert jsonl["Content-Type"] == "application/jsonl"
    assert jsonl["Content-Disposition"].endswith('.jsonl"')


def _expected_rows(data: bytes, format: str) -> list[dict]:
    """The JSONL rows as the Parquet file holds them: judgments' criteria as JSON text."""
    rows = [json.loads(line) for line in data.splitlines()]
    for row in rows:
        if format == "judgments":
            row["criteria"] = json.dumps(row["criteria"], ensure_ascii=False)
    return rows


def _load_parquet(path: Path, tmp_path: Path):
    return datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )


@pytest.mark.parametrize(("format", "params"), CASES)
def test_datasets_reads_the_parquet_of_every_format(api, bob, voted, tmp_path, format, params):
    """Same columns in the same order, same rows and values as the JSON Lines, typed."""
    client = api(bob)
    job = _post(client, format=format, file_format="parquet", **params).json()
    assert job["status"] == "done", job
    path = tmp_path / "file.parquet"
    path.write_bytes(_download(client, job))
    expected = _expected_rows(_streamed(client, format, params), format)
    assert job["rows_written"] == len(expected) > 0
    dataset = _load_parquet(path, tmp_path)
    assert dataset.column_names == list(expected[0])
    assert dataset.num_rows == len(expected)
    assert dataset.data.schema.equals(schema_for(format), check_metadata=False)
    assert dataset.to_list() == expected
    # Several row groups when the rows outnumber one group's size.
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    features = dataset.features
    if format in ("trl", "trl-implicit", "hh-rlhf", "kto"):
        assert features["agreement"].dtype == "float64"
        assert features["comparison_id"].dtype == "int64"
        assert features["annotators"].feature.dtype == "string"
    if format == "kto":
        assert features["label"].dtype == "bool"
        assert features["votes"]["candidate"].dtype == "int64"
    if format == "arena":
        assert features["conversation_a"].feature["role"].dtype == "string"
        assert features["tstamp"].dtype == "float64"
    if format == "judgments":
        assert features["criteria"].dtype == "string"
        assert set(json.loads(dataset[0]["criteria"])) == {"honesty"}


def test_parquet_is_written_in_row_groups(api, bob, voted, settings, tmp_path):
    settings.EXPORT_PARQUET_ROW_GROUP = 4
    client = api(bob)
    job = _post(client, format="judgments", file_format="parquet").json()
    path = tmp_path / "groups.parquet"
    path.write_bytes(_download(client, job))
    metadata = pq.ParquetFile(path).metadata
    assert job["rows_written"] == metadata.num_rows == 39  # 13 comparisons, 3 votes each
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [4] * 9 + [3]
    assert _load_parquet(path, tmp_path).num_rows == 39


@pytest.mark.parametrize("form", ["conversational", "text"])
@pytest.mark.parametrize("kind", ["string", "conversation", "mixed"])
@pytest.mark.parametrize("format", ["trl", "kto"])
def test_trl_and_kto_parquet_for_each_kind_of_prompt(
    api, bob, project, annotators, import_rows, tmp_path, kind, format, form
):
    """The prompt and response columns are typed by `prompt_form` alone, whatever the prompts:
    message lists in the conversational form (a mixed export included), strings in the text
    form; and the Parquet rows are the JSON Lines rows."""
    prompts = {"string": ["Hi?"], "conversation": [MESSAGES], "mixed": ["Hi?", MESSAGES]}[kind]
    import_rows(*(prompt_line(f"p-{i}", prompt=p) for i, p in enumerate(prompts)))
    for user, choice in zip(annotators, ["a", "a", "b"], strict=True):
        _vote(project, user, choice)
    client = api(bob)
    job = _post(client, format=format, file_format="parquet", prompt_form=form).json()
    assert job["status"] == "done", job
    path = tmp_path / "kind.parquet"
    path.write_bytes(_download(client, job))
    dataset = _load_parquet(path, tmp_path)
    expected = _expected_rows(_streamed(client, format, {"prompt_form": form}), format)
    assert dataset.to_list() == expected
    shape = Shape(conversational=form == "conversational")
    assert dataset.data.schema.equals(schema_for(format, shape), check_metadata=False)
    prompt = dataset.features["prompt"]
    if form == "conversational":
        assert prompt.feature["content"].dtype == "string"
        assert dataset[len(dataset) - 1]["prompt"] == (
            MESSAGES if kind != "string" else [{"role": "user", "content": "Hi?"}]
        )
    else:
        assert prompt.dtype == "string"
        assert all(row["prompt"].endswith("\n\nAssistant:") for row in dataset)


def test_the_prompt_columns_are_typed_by_the_parameter_whatever_the_filters_keep(
    api, bob, project, annotators, import_rows, tmp_path
):
    """A string prompt between model-1 and model-2, a conversation between two other models:
    an export of model-1 and model-2 holds strings only, and is still in the conversational
    form (no query of the prompts decides it), as is the whole project's."""
    conversation = prompt_line("conv", prompt=MESSAGES)
    for candidate, model in zip(conversation["candidates"], ["model-8", "model-9"], strict=True):
        candidate["model"] = model
    import_rows(prompt_line("plain"), conversation)
    for user in annotators:
        _vote(project, user, "a")
    client = api(bob)
    for filters, count in (({"models": "model-1,model-2"}, 1), ({}, 2)):
        job = _post(client, format="trl", file_format="parquet", **filters).json()
        assert job["status"] == "done", job
        path = tmp_path / f"typed-{count}.parquet"
        path.write_bytes(_download(client, job))
        dataset = _load_parquet(path, tmp_path)
        assert dataset.num_rows == count
        assert dataset.features["prompt"].feature["role"].dtype == "string"
        assert dataset[0]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]


def test_the_dataset_card_goes_with_the_export(api, bob, voted, export_root):
    client = api(bob)
    job = _post(client, format="trl", file_format="parquet").json()
    response = client.get(job["card"])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    card = b"".join(response.streaming_content).decode()
    streamed = client.get(STREAM, {"format": "card"}).content.decode()
    assert card == streamed
    assert (export_root / f"export-{job['id']}.card.md").read_text() == card
    assert sorted(p.name for p in export_root.iterdir()) == [
        f"export-{job['id']}.card.md",
        f"export-{job['id']}.parquet",
    ]


def test_jobs_are_listed_and_shown(api, bob, voted):
    client = api(bob)
    first = _post(client, format="trl").json()
    second = _post(client, format="arena", file_format="parquet").json()
    page = client.get(JOBS, {"page_size": 1}).json()
    assert [job["id"] for job in page["results"]] == [first["id"]]
    assert [job["id"] for job in client.get(page["next"]).json()["results"]] == [second["id"]]
    shown = client.get(second["url"]).json()
    assert shown == second
    assert shown["requested_by"] == "bob"
    assert (shown["format"], shown["file_format"], shown["attempts"]) == ("arena", "parquet", 1)
    assert shown["rows_written"] == shown["rows_total"] == 39  # arena: one row per vote
    assert shown["started_at"] <= shown["finished_at"] < shown["expires_at"]


def test_staff_may_request_too(api, alice, voted):
    response = _post(api(alice), format="kto", include_ties="true")
    assert response.status_code == 400  # kto takes no include_ties
    assert _post(api(alice), format="kto").json()["status"] == "done"


@pytest.fixture
def someone_elses_job(api, bob, voted):
    return _post(api(bob), format="trl").json()


@pytest.fixture
def other_lead(make_user):
    user = make_user("olga")
    other = project_create(slug="other", name="Other", created_by=user)
    membership_add(project=other, user=user, role="lead")
    return user


def _denied(client, job) -> None:
    base = f"{JOBS}{job['id']}/"
    for url in (JOBS, base, base + "download/", base + "card/"):
        response = client.get(url)
        assert response.status_code in (401, 403, 404), (url, response.status_code)
        assert b"export-" not in b"".join(getattr(response, "streaming_content", [])) + getattr(
            response, "content", b""
        )
    assert _post(client, format="trl").status_code in (401, 403, 404)
    assert client.post(base + "cancel/").status_code in (401, 403, 404)
    assert ExportJob.objects.count() == 1
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT_CANCELLED).exists()


def test_an_annotator_cannot_request_see_or_download(api, annotators, someone_elses_job):
    _denied(api(annotators[0]), someone_elses_job)


def test_a_lead_of_another_project_cannot_request_see_or_download(
    api, other_lead, someone_elses_job
):
    _denied(api(other_lead), someone_elses_job)
    # Nor through their own project's URL with this job's id.
    response = api(other_lead).get(f"/api/v1/projects/other/exports/{someone_elses_job['id']}/")
    assert response.status_code == 404
    download = f"/api/v1/projects/other/exports/{someone_elses_job['id']}/download/"
    assert api(other_lead).get(download).status_code == 404


def test_anonymous_cannot_request_see_or_download(api, someone_elses_job):
    _denied(api(None), someone_elses_job)


def test_a_user_with_no_access_cannot_either(api, charlie, someone_elses_job):
    _denied(api(charlie), someone_elses_job)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"format": "csv"}, "format"),
        ({"format": "card"}, "format"),
        ({"file_format": "csv"}, "file_format"),
        ({"format": "trl", "min_votes": 0}, "min_votes"),
        ({"format": "trl", "min_agreement": "lots"}, "min_agreement"),
        ({"format": "trl", "include_ties": False}, "include_ties"),
        ({"format": "arena", "include_ties": "maybe"}, "include_ties"),
        ({"format": "kto", "both_bad": "sometimes"}, "both_bad"),
        ({"format": "trl", "split": "validation"}, "split"),
        ({"format": "trl", "batch": "first"}, "batch"),
        ({"format": "trl", "batch": 999999}, "batch"),
        ({"format": "trl", "min_votes": [2]}, "min_votes"),
        ({"format": "trl", "colour": "blue"}, "colour"),
        # Checked against the project when the job is requested, not when it runs.
        ({"format": "trl", "models": "no-such-model"}, "models"),
        ({"format": "trl", "criterion": "kindness"}, "criterion"),
        ({"format": "trl", "since": "yesterday"}, "since"),
    ],
)
def test_bad_parameters_are_a_400_naming_them_and_nothing_is_created(api, bob, voted, body, named):
    response = _post(api(bob), **body)
    assert response.status_code == 400, response.content
    assert named in response.json(), response.json()
    assert not ExportJob.objects.exists()


def test_a_batch_of_another_project_is_refused(api, bob, voted, other_lead, import_rows):
    other = voted.__class__.objects.get(slug="other")
    foreign = import_rows(prompt_line("x"), target=other)
    response = _post(api(bob), format="trl", batch=foreign.pk)
    assert response.status_code == 400
    assert "batch" in response.json()
    assert not ExportJob.objects.exists()


def test_a_batch_filter_applies(api, bob, voted, import_rows):
    client = api(bob)
    batch_id = voted.batches.order_by("id").first().pk
    job = _post(client, format="judgments", batch=batch_id).json()
    assert job["parameters"] == {"batch": str(batch_id)}
    assert _download(client, job) == _streamed(client, "judgments", {"batch": str(batch_id)})
    assert job["rows_written"] == 36  # the first batch's 12 comparisons, 3 votes each


@pytest.mark.parametrize("format", ["judgments", "arena", "trl"])
def test_the_estimate_counts_gold_comparisons_when_they_are_included(api, bob, voted, format):
    first_two = voted.comparisons.order_by("id").values("pk")[:2]
    voted.comparisons.filter(pk__in=first_two).update(is_gold=True, gold_answer="a")
    client = api(bob)
    without = _post(client, format=format).json()
    with_gold = _post(client, format=format, include_gold=True).json()
    assert with_gold["rows_written"] > without["rows_written"]
    if format == "trl":  # an upper bound: comparisons without a winner are counted
        assert with_gold["rows_total"] >= with_gold["rows_written"]
        assert with_gold["rows_total"] > without["rows_total"]
    else:
        assert without["rows_total"] == without["rows_written"]
        assert with_gold["rows_total"] == with_gold["rows_written"]


def test_requesting_a_background_export_is_audited(api, bob, voted):
    job = _post(api(bob), format="kto", file_format="parquet", both_bad="include").json()
    (event,) = AuditEvent.objects.filter(action=AuditAction.EXPORT)
    assert (event.actor, event.project, event.target_id) == (bob, voted, str(job["id"]))
    assert event.details == {"format": "kto", "file_format": "parquet", "both_bad": "include"}


def test_a_request_body_that_is_not_an_object_is_a_400(api, bob, voted):
    response = api(bob).post(JOBS, ["trl"], format="json")
    assert response.status_code == 400
    assert not ExportJob.objects.exists()


def test_expired_files_are_deleted_and_their_links_answer_410(
    api, bob, voted, export_root, settings
):
    client = api(bob)
    job = _post(client, format="trl", file_format="parquet").json()
    kept = _post(client, format="trl").json()
    assert len(list(export_root.iterdir())) == 4
    ExportJob.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    counts = export_jobs_sweep()

    assert counts["expired"] == 1
    assert sorted(p.name for p in export_root.iterdir()) == [
        f"export-{kept['id']}.card.md",
        f"export-{kept['id']}.jsonl",
    ]
    shown = client.get(job["url"]).json()
    assert (shown["status"], shown["download"], shown["card"]) == ("expired", None, None)
    for suffix in ("download/", "card/"):
        response = client.get(job["url"] + suffix)
        assert response.status_code == 410, response
        assert "expired" in response.json()["detail"]
    assert client.get(kept["download"]).status_code == 200


def test_files_expire_after_export_ttl(api, bob, voted, settings):
    settings.EXPORT_TTL = 60
    job = _post(api(bob), format="trl").json()
    finished = ExportJob.objects.get(pk=job["id"]).finished_at
    assert ExportJob.objects.get(pk=job["id"]).expires_at == finished + timedelta(seconds=60)
    assert export_jobs_sweep(now=finished + timedelta(seconds=59))["expired"] == 0
    assert export_jobs_sweep(now=finished + timedelta(seconds=61))["expired"] == 1
    assert ExportJob.objects.get(pk=job["id"]).status == ExportStatus.EXPIRED


def _job(project, bob, **fields) -> ExportJob:
    return ExportJob.objects.create(
        project=project, requested_by=bob, format="trl", file_format="jsonl", **fields
    )


def test_an_error_in_the_task_marks_the_job_failed_with_the_reason(api, bob, voted):
    job = _job(voted, bob, parameters={"min_votes": "none"})
    assert export_job_run(job.pk) == ExportStatus.FAILED
    shown = api(bob).get(f"{JOBS}{job.pk}/").json()
    assert shown["status"] == "failed"
    assert "min_votes" in shown["error"]
    assert shown["download"] is None
    assert api(bob).get(f"{JOBS}{job.pk}/download/").status_code == 409


def test_a_stale_running_job_is_requeued_and_run_again(
    api, bob, voted, settings, export_root, django_capture_on_commit_callbacks
):
    """A worker died at attempt 1: its temporary file is removed, the job re-queued and (Celery
    eager here) run to done."""
    settings.EXPORT_STALE_AFTER = 60
    old = timezone.now() - timedelta(seconds=61)
    job = _job(voted, bob, status=ExportStatus.RUNNING, attempts=1, heartbeat_at=old)
    export_root.mkdir(parents=True, exist_ok=True)
    (export_root / f".export-{job.pk}-1.tmp").write_bytes(b"half a file")

    with django_capture_on_commit_callbacks(execute=True):
        counts = export_jobs_sweep()

    assert counts == {"requeued": 1, "failed": 0, "resent": 0, "expired": 0}
    job.refresh_from_db()
    assert (job.status, job.attempts) == (ExportStatus.DONE, 2)
    assert not (export_root / f".export-{job.pk}-1.tmp").exists()
    assert (export_root / job.file_name).read_bytes() == _streamed(api(bob), "trl", {})


def test_a_stale_job_at_its_last_attempt_is_marked_failed(bob, voted, settings):
    settings.EXPORT_STALE_AFTER = 60
    settings.EXPORT_MAX_ATTEMPTS = 3
    old = timezone.now() - timedelta(seconds=61)
    job = _job(voted, bob, status=ExportStatus.RUNNING, attempts=3, heartbeat_at=old)
    fresh = _job(voted, bob, status=ExportStatus.RUNNING, attempts=1, heartbeat_at=timezone.now())

    assert export_jobs_sweep()["failed"] == 1

    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert job.error.startswith("attempt 3 of 3 stopped (no heartbeat for 60 s")
    assert job.finished_at is not None
    fresh.refresh_from_db()
    assert fresh.status == ExportStatus.RUNNING  # its heartbeat is fresh: left alone


def test_a_duplicate_delivery_does_nothing(bob, voted, settings):
    """Done, failed, expired, or running with a fresh heartbeat: the task does not run it."""
    settings.EXPORT_STALE_AFTER = 60
    now = timezone.now()
    for status in (ExportStatus.DONE, ExportStatus.FAILED, ExportStatus.EXPIRED):
        job = _job(voted, bob, status=status, attempts=1, heartbeat_at=now - timedelta(hours=1))
        assert export_job_run(job.pk) == status
        job.refresh_from_db()
        assert (job.status, job.attempts) == (status, 1)
    running = _job(voted, bob, status=ExportStatus.RUNNING, attempts=1, heartbeat_at=now)
    assert export_job_claim(running.pk) is None
    assert export_job_run(running.pk) == ExportStatus.RUNNING
    running.refresh_from_db()
    assert running.attempts == 1


def test_a_superseded_run_can_neither_write_nor_publish(bob, voted, settings, export_root):
    """Run 1 claimed the job, then went quiet; the sweep re-queued it and run 2 claimed it.
    When run 1 wakes up, its next progress write and its final rename both find that the job
    is no longer its own."""
    settings.EXPORT_STALE_AFTER = 60
    job = _job(voted, bob)
    first = export_job_claim(job.pk)
    assert first == 1
    ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert export_jobs_sweep()["requeued"] == 1  # (its message is sent on commit: not here)
    second = export_job_claim(job.pk)
    assert second == 2
    stale_run = _Run(ExportJob.objects.get(pk=job.pk), first)
    with pytest.raises(Superseded):
        stale_run.update(rows_written=10)
    export_root.mkdir(parents=True, exist_ok=True)
    temp, card = export_root / "t.tmp", export_root / "c.tmp"
    temp.write_bytes(b"{}\n")
    card.write_text("card")
    with pytest.raises(Superseded):
        _finish(stale_run, temp, card)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.rows_written, job.file_name) == ("running", 2, 0, "")
    assert not list(export_root.glob("export-*"))


def test_a_queued_job_whose_message_was_lost_is_sent_again(
    bob, voted, settings, django_capture_on_commit_callbacks
):
    settings.EXPORT_STALE_AFTER = 60
    job = _job(voted, bob, heartbeat_at=timezone.now() - timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        assert export_jobs_sweep()["resent"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (ExportStatus.DONE, 1)


def test_an_empty_export_is_an_empty_file(api, bob, project):
    client = api(bob)
    jsonl = _post(client, format="trl").json()
    assert (jsonl["status"], jsonl["rows_written"], jsonl["file_size"]) == ("done", 0, 0)
    assert _download(client, jsonl) == b""
    parquet = _post(client, format="judgments", file_format="parquet").json()
    assert parquet["status"] == "done"
    assert pq.read_table(__import__("io").BytesIO(_download(client, parquet))).num_rows == 0


def test_the_admin_shows_jobs_read_only(client, alice, bob, voted):
    job = _job(voted, bob)
    client.force_login(alice)
    assert client.get(f"/admin/exports/exportjob/{job.pk}/change/").status_code == 200
    page = client.get(f"/admin/exports/exportjob/{job.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # read-only: a job is started, never edited
    # Adding is starting a new export (tests/exports/test_admin.py), not editing a row.
    assert (
        "Start a background export" in client.get("/admin/exports/exportjob/add/").content.decode()
    )


@pytest.fixture
def ranked(project, annotators, import_rows):
    """A listwise project: a string prompt and a conversation, each ranked by all three."""
    from apps.judging.queue import assignment_next, judgment_submit

    project.scheme = "listwise"
    project.save()
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    import_rows(prompt_line("r-1", n=4), prompt_line("r-2", prompt=conversation, n=3))
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            ids = [c.external_id for c in lease.shown]
            ranking = ids if index < 2 else [ids[1], ids[0], *ids[2:]]
            judgment_submit(assignment_id=lease.pk, annotator=user, ranking=ranking)
    return project


@pytest.mark.parametrize("format", ["listwise", "trl", "kto"])
def test_a_listwise_projects_exports_in_the_background_and_as_parquet(
    api, bob, ranked, tmp_path, format
):
    client = api(bob)
    streamed = _streamed(client, format, {})
    job = _post(client, format=format).json()
    assert job["status"] == "done", job
    assert _download(client, job) == streamed
    assert job["rows_total"] >= job["rows_written"] > 0
    job = _post(client, format=format, file_format="parquet").json()
    assert job["status"] == "done", job
    path = tmp_path / "file.parquet"
    path.write_bytes(_download(client, job))
    expected = _expected_rows(streamed, format)
    dataset = _load_parquet(path, tmp_path)
    assert dataset.num_rows == len(expected) > 0
    assert dataset.to_list() == expected
    # A string prompt and a conversation: both as messages, in a typed column.
    assert dataset.features["prompt"].feature["content"].dtype == "string"
    # A ranking has no sides, and the project no grades: no all-null column.
    assert not {"chosen_position", "margin", "strength_mean"} & set(dataset.column_names)
    if format == "listwise":
        assert dataset.features["candidates"].feature["rank"].dtype == "int64"
        assert dataset.features["kendall_w"].dtype == "float64"


@pytest.mark.django_db(transaction=True)
def test_a_long_card_keeps_the_jobs_heartbeat(bob, voted, settings):
    """While the card's statistics run, a thread beats: the sweep sees a live job."""
    import time as clock

    from apps.exports.jobs import _beating, _Run, export_job_claim
    from apps.exports.models import ExportJob

    settings.EXPORT_STALE_AFTER = 0.3
    job = ExportJob.objects.create(
        project=voted, requested_by=bob, format="trl", file_format="jsonl", parameters={}
    )
    attempt = export_job_claim(job.pk)
    assert attempt == 1
    job.refresh_from_db()
    before = job.heartbeat_at
    with _beating(_Run(job, attempt)):
        clock.sleep(0.5)
    job.refresh_from_db()
    assert job.heartbeat_at > before


# --- cancelling ---------------------------------------------------------------------------------


@pytest.fixture
def not_eager():
    """Celery not eager: a POST leaves its job queued (its message is sent on commit, which a
    test's transaction never reaches, so no worker is needed)."""
    from annotate.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def _cancel(client, job_id: int):
    return client.post(f"{JOBS}{job_id}/cancel/")


def test_a_queued_job_is_cancelled_and_never_started(
    api, bob, voted, not_eager, settings, export_root
):
    client = api(bob)
    queued = _post(client, format="judgments").json()
    assert queued["status"] == "queued"

    response = _cancel(client, queued["id"])

    assert response.status_code == 200, response.content
    job = response.json()
    assert (job["status"], job["download"], job["card"]) == ("cancelled", None, None)
    assert job["error"] == "cancelled by bob while queued"
    assert job["finished_at"] is not None
    assert client.get(queued["url"]).json()["status"] == "cancelled"
    assert client.get(f"{queued['url']}download/").status_code == 409
    (event,) = AuditEvent.objects.filter(action=AuditAction.EXPORT_CANCELLED)
    assert (event.actor, event.project, event.target_id) == (bob, voted, str(queued["id"]))
    assert event.details["status"] == {"old": "queued", "new": "cancelled"}
    assert event.details["format"] == "judgments"
    # Its message, delivered late, starts nothing; the sweep does not re-queue or re-send it.
    assert export_job_run(queued["id"]) == ExportStatus.CANCELLED
    settings.EXPORT_STALE_AFTER = 60
    later = timezone.now() + timedelta(hours=1)
    assert export_jobs_sweep(later) == {"requeued": 0, "failed": 0, "resent": 0, "expired": 0}
    stored = ExportJob.objects.get(pk=queued["id"])
    assert (stored.status, stored.attempts, stored.file_name) == ("cancelled", 0, "")
    assert not list(export_root.glob("*"))


def test_staff_may_cancel(api, alice, bob, voted):
    job = _job(voted, bob)
    response = _cancel(api(alice), job.pk)
    assert response.status_code == 200, response.content
    assert response.json()["error"] == "cancelled by alice while queued"


def test_a_cancelled_run_can_neither_write_nor_publish(api, bob, voted, export_root):
    """The worker's side, in-process (tests/exports/test_worker.py runs it in a real worker):
    once cancelled, the run's next progress write and its final rename both fail, and a
    sweep does not re-queue it."""
    job = _job(voted, bob)
    attempt = export_job_claim(job.pk)
    assert attempt == 1
    run = _Run(ExportJob.objects.get(pk=job.pk), attempt)
    response = _cancel(api(bob), job.pk)
    assert response.status_code == 200, response.content
    assert response.json()["error"] == "cancelled by bob while running"
    with pytest.raises(Superseded):
        run.update(rows_written=10)
    export_root.mkdir(parents=True, exist_ok=True)
    temp, card = export_root / "t.tmp", export_root / "c.tmp"
    temp.write_bytes(b"{}\n")
    card.write_text("card")
    with pytest.raises(Superseded):
        _finish(run, temp, card)
    assert export_job_claim(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.attempts, job.file_name) == ("cancelled", 1, "")
    assert not list(export_root.glob("export-*"))


@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
def test_an_ended_job_cannot_be_cancelled(api, bob, voted, status):
    job = _job(voted, bob, status=status, error="as it was")
    response = _cancel(api(bob), job.pk)
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        f"This export is {status}: only a queued or running export can be cancelled."
    )
    job.refresh_from_db()
    assert (job.status, job.error) == (status, "as it was")
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT_CANCELLED).exists()


def test_a_done_job_cannot_be_cancelled_and_keeps_its_file(api, bob, voted, export_root):
    client = api(bob)
    done = _post(client, format="trl").json()
    assert done["status"] == "done"
    data = _download(client, done)

    response = _cancel(client, done["id"])

    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        "This export is done: only a queued or running export can be cancelled. Its file "
        "stays until it expires."
    )
    assert client.get(done["url"]).json()["status"] == "done"
    assert _download(client, done) == data
    assert sorted(p.name for p in export_root.iterdir()) == [
        f"export-{done['id']}.card.md",
        f"export-{done['id']}.jsonl",
    ]


def test_an_unknown_job_is_a_404(api, bob, voted):
    assert _cancel(api(bob), 999999).status_code == 404


def test_the_sweep_deletes_what_a_dead_cancelled_run_left_once(bob, voted, settings, export_root):
    """A run whose worker died cannot remove its temporary file: once the cancelled job's
    heartbeat is stale, the sweep does (and clears the heartbeat, so it looks only once)."""
    settings.EXPORT_STALE_AFTER = 60
    old = timezone.now() - timedelta(seconds=61)
    job = _job(voted, bob, status=ExportStatus.CANCELLED, attempts=1, heartbeat_at=old)
    export_root.mkdir(parents=True, exist_ok=True)
    (export_root / f".export-{job.pk}-1.tmp").write_bytes(b"half a file")

    assert export_jobs_sweep() == {"requeued": 0, "failed": 0, "resent": 0, "expired": 0}

    assert not list(export_root.glob("*"))
    job.refresh_from_db()
    assert (job.status, job.attempts, job.heartbeat_at) == ("cancelled", 1, None)
