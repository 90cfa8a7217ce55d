"""Imports read as a stream and stored in chunks (COPY on PostgreSQL, bulk inserts on SQLite):
whole or not at all, with ids that concurrent imports never share, and a progress bar that moves.
"""

import io
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from apps.batches import services
from apps.batches.import_format import ImportFormatError
from apps.batches.models import Batch, BatchSource, BatchSourcePart, Candidate, Comparison, Prompt
from apps.batches.services import (
    CHECK_CHUNK,
    STORE_CHUNK_ROWS,
    _batch_store,
    _check_file,
    _prompts_to_store,
    batch_import,
    batch_import_progress,
    batch_import_stored,
)
from apps.judging.models import Rendering
from apps.projects.models import Project
from apps.projects.services import project_create
from tests.conftest import jsonl, prompt_line

# Many chunks of the check and of the store.
LARGE = 2600
assert LARGE > 5 * CHECK_CHUNK and LARGE * 7 > 5 * STORE_CHUNK_ROWS


def large_file(count: int = LARGE, bad_line: int | None = None, prefix: str = "p") -> bytes:
    rows: list[Any] = [
        prompt_line(f"{prefix}-{i}", prompt=f"Prompt {prefix} {i}", n=3) for i in range(count)
    ]
    if bad_line is not None:
        rows[bad_line - 1] = '{"id": "broken", "prompt": "x", "candidates": [}'
    return jsonl(*rows)


def rows_of(project: Project) -> tuple[int, int, int, int]:
    return (
        Batch.objects.filter(project=project).count(),
        Prompt.objects.filter(project=project).count(),
        Candidate.objects.filter(prompt__project=project).count(),
        Comparison.objects.filter(project=project).count(),
    )


def assert_whole(batch: Batch, prompts: int, candidates: int) -> None:
    """Every row of the batch refers to rows of the same batch and prompt: ids were not mixed."""
    assert Prompt.objects.filter(batch=batch).count() == prompts
    assert Candidate.objects.filter(prompt__batch=batch).count() == prompts * candidates
    pairs = candidates * (candidates - 1) // 2
    assert Comparison.objects.filter(batch=batch).count() == prompts * pairs
    crossed = Comparison.objects.filter(batch=batch).exclude(
        candidate_a__prompt=models_f("prompt"), candidate_b__prompt=models_f("prompt")
    )
    assert not crossed.exists()
    assert not Comparison.objects.filter(batch=batch).exclude(prompt__batch=batch).exists()
    # A prompt's candidates are its own, in file order (c1, c2, ...).
    for prompt in Prompt.objects.filter(batch=batch).order_by("?")[:5]:
        ids = list(prompt.candidates.order_by("id").values_list("external_id", flat=True))
        assert ids == [f"c{i}" for i in range(1, candidates + 1)]


def models_f(name: str) -> Any:
    from django.db.models import F

    return F(name)


# A bad line far into a large file: nothing stored, the line named (both backends).


def test_a_bad_line_far_into_a_large_file_stores_nothing_and_names_its_line(project):
    data = large_file(bad_line=LARGE - 3)
    with pytest.raises(ImportFormatError) as info:
        batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    assert [(e.line, e.error[:12]) for e in info.value.errors] == [(LARGE - 3, "invalid JSON")]
    assert rows_of(project) == (0, 0, 0, 0)


def test_a_bad_line_far_into_a_large_background_file_fails_the_batch_with_its_line(
    project, settings, django_capture_on_commit_callbacks
):
    data = large_file(bad_line=LARGE - 1)
    settings.IMPORT_BACKGROUND_BYTES = 10
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    batch.refresh_from_db()
    assert batch.status == "failed"
    assert [(e["line"], e["error"][:12]) for e in batch.errors] == [(LARGE - 1, "invalid JSON")]
    assert rows_of(project)[1:] == (0, 0, 0)
    assert not BatchSource.objects.exists() and not BatchSourcePart.objects.exists()


def test_a_store_that_fails_late_leaves_nothing(project):
    """The check passed, then another import took the last prompt's id before the store reached
    it: the store finds it in its last chunk, names its line, and the rows of every chunk before
    are rolled back."""
    data = large_file()
    totals = _check_file(project, io.BytesIO(data))
    other = Batch.objects.create(project=project, status="active")
    Prompt.objects.create(project=project, batch=other, external_id=f"p-{LARGE - 1}", content="x")
    before = rows_of(project)
    batch = Batch.objects.create(project=project)
    with pytest.raises(ImportFormatError) as info, transaction.atomic():
        _batch_store(batch=batch, prompts=_prompts_to_store(io.BytesIO(data)), totals=totals)
    assert [(e.line, e.error) for e in info.value.errors] == [
        (LARGE, f"duplicate prompt id 'p-{LARGE - 1}': already in this project (batch {other.pk})")
    ]
    assert Prompt.objects.filter(batch=batch).count() == 0
    assert Comparison.objects.filter(batch=batch).count() == 0
    assert rows_of(project)[1:] == before[1:]


def test_a_large_file_is_stored_whole_in_file_order(project):
    data = large_file()
    batch = batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    assert (batch.status, batch.prompt_count, batch.comparison_count) == (
        "active",
        LARGE,
        LARGE * 3,
    )
    assert_whole(batch, LARGE, 3)
    ordered = list(Prompt.objects.filter(batch=batch).order_by("id").values_list("external_id"))
    assert [external_id for (external_id,) in ordered] == [f"p-{i}" for i in range(LARGE)]
    # The import rendered no text itself: that is the rendering task's, after the commit.
    assert not Rendering.objects.exists()


def test_the_background_upload_is_stored_in_parts_and_read_back_across_them(
    project, settings, django_capture_on_commit_callbacks, monkeypatch
):
    # Parts far smaller than a line: every line is split across parts.
    monkeypatch.setattr(services, "SOURCE_PART_BYTES", 97)
    data = large_file(count=50)
    settings.IMPORT_BACKGROUND_BYTES = 10
    parts: list[int] = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
        parts.append(BatchSourcePart.objects.filter(source__batch=batch).count())
    assert parts == [-(-len(data) // 97)]
    assert Batch.objects.get(pk=batch.pk).rows_total == 50
    for callback in callbacks:
        callback()
    batch.refresh_from_db()
    assert (batch.status, batch.prompt_count) == ("active", 50)
    assert_whole(batch, 50, 3)
    assert not BatchSourcePart.objects.exists()


# Concurrent imports get disjoint ids, and each batch's rows refer to its own (PostgreSQL).


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_get_disjoint_and_correct_ids(alice):
    projects = [
        project_create(slug=f"race-{i}", name=f"Race {i}", created_by=alice) for i in (1, 2)
    ]
    start = threading.Barrier(2)
    batches: dict[int, Batch] = {}
    failures: list[BaseException] = []
    count = 1500  # a dozen chunks each, so that their COPYs interleave

    def run(index: int) -> None:
        try:
            data = large_file(count=count, prefix=f"r{index}")
            start.wait(10)
            batches[index] = batch_import(
                project=projects[index],
                source=io.BytesIO(data),
                size=len(data),
                background=False,
            )
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    first, second = batches[0], batches[1]
    for batch in (first, second):
        assert_whole(batch, count, 3)
    for model, key in ((Prompt, "batch"), (Candidate, "prompt__batch"), (Comparison, "batch")):
        ids = [
            set(model.objects.filter(**{key: b}).values_list("id", flat=True))
            for b in batches.values()
        ]
        assert not ids[0] & ids[1], model
    # They did run at the same time: each one's ids are not all below the other's.
    prompt_ids = [
        list(Prompt.objects.filter(batch=b).values_list("id", flat=True)) for b in (first, second)
    ]
    assert min(prompt_ids[0]) < max(prompt_ids[1]) and min(prompt_ids[1]) < max(prompt_ids[0])


# The progress bar moves through a background import, in both of its halves (PostgreSQL: the
# run holds the batch row in a transaction while it stores, as a worker does).


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_progress_of_a_background_import_increases_while_it_runs(
    project, bob, no_worker, settings, monkeypatch
):
    settings.IMPORT_TEST_DELAY_MS = 40
    data = large_file(count=3000)
    batch = batch_import(
        project=project, source=io.BytesIO(data), size=len(data), created_by=bob, background=True
    )
    # Progress every 300 lines (the check) and every STORE_CHUNK_ROWS rows (the store).
    monkeypatch.setattr(services, "CHECK_CHUNK", 300)
    samples: list[tuple[str, int]] = []
    done = threading.Event()

    def run() -> None:
        try:
            batch_import_stored(batch_id=batch.pk)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    while not done.is_set():
        progress = batch_import_progress(Batch.objects.get(pk=batch.pk))
        samples.append((progress["phase"], progress["percent"]))
        time.sleep(0.02)
    thread.join(60)
    assert Batch.objects.get(pk=batch.pk).status == "active"
    percents = [percent for phase, percent in samples if phase in ("checking", "storing")]
    assert percents == sorted(percents), samples
    checking = {p for phase, p in samples if phase == "checking"}
    storing = {p for phase, p in samples if phase == "storing"}
    assert len(checking) >= 3 and len(storing) >= 3, samples
    assert max(checking) <= 50 <= min(storing)


# On PostgreSQL the store writes from a thread of its own (services._Sink) while the file is
# read: what goes wrong on that thread reaches the import, and takes everything back.


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_id_committed_by_another_import_while_the_store_writes_takes_everything_back(
    project,
):
    """Another transaction holds the last prompt's id, not yet committed: the store's look-up
    cannot see it, its COPY waits on the unique index, and fails once the other commits. The
    error raised on the writing thread reaches the import, which stores nothing."""
    data = large_file()
    other = Batch.objects.create(project=project, status="active")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Prompt.objects.create(
                    project=project, batch=other, external_id=f"p-{LARGE - 1}", content="x"
                )
                holding.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    threads_seen: set[str] = set()
    original = services._CopyWriter.store

    def store(self: Any, prompts: Any) -> int:
        threads_seen.add(threading.current_thread().name)
        if prompts[-1].external_id == f"p-{LARGE - 1}":
            release.set()  # the other commits while this COPY waits for it
        return original(self, prompts)

    services._CopyWriter.store = store
    try:
        with pytest.raises(ImportFormatError) as info:
            batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    finally:
        services._CopyWriter.store = original
        release.set()
        holder.join(30)
    assert [e.error for e in info.value.errors] == [
        "prompt ids collided with a concurrent import; try again"
    ]
    assert threads_seen == {"import-writer"}
    assert Batch.objects.filter(project=project).exclude(pk=other.pk).count() == 0
    assert rows_of(project)[1:] == (1, 0, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_bad_line_read_while_the_store_writes_stops_the_writer_and_stores_nothing(project):
    """The file's error is found by the reading thread after chunks were handed to the writer:
    the writer stops, the rows it wrote are taken back, the import names the line."""
    data = large_file(bad_line=LARGE - 1)
    with pytest.raises(ImportFormatError) as info:
        batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    assert [(e.line, e.error[:12]) for e in info.value.errors] == [(LARGE - 1, "invalid JSON")]
    assert rows_of(project) == (0, 0, 0, 0)
    assert not [t for t in threading.enumerate() if t.name == "import-writer"]


def _scans_of(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan that read `table`."""
    found = [plan] if plan.get("Relation Name") == table else []
    for child in plan.get("Plans", []):
        found += _scans_of(child, table)
    return found


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_stores_look_up_of_existing_ids_probes_the_index_per_id_on_stale_statistics(project):
    """Each chunk looks up its prompt ids in the project. The planner sees the statistics taken
    before the import (an empty table), while the import has written many prompts since: the
    look-up must still be one probe of the unique index per id (both columns in the index's
    condition), not a read of every prompt of the project filtered by the list, whose cost grows
    with every chunk written (quadratic over a large import). And it finds what is there."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Prompt._meta.db_table}")
    earlier = Batch.objects.create(project=project, status="active")
    Prompt.objects.bulk_create(
        Prompt(project=project, batch=earlier, external_id=f"old-{i}", content="x")
        for i in range(6000)
    )
    batch = Batch.objects.create(project=project, status="importing")
    writer = services._CopyWriter(batch, listwise=False)
    wanted = [f"new-{i}" for i in range(150)] + ["old-17", "old-5999"]
    params = [writer.prompt_sequence, 3, writer.candidate_sequence, 5, wanted, project.pk]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + writer.reserve_sql, params)
        plan = cursor.fetchone()[0]
        cursor.execute(writer.reserve_sql, params)
        prompt_ids, candidate_ids, found = cursor.fetchone()
    plan = plan[0]["Plan"] if isinstance(plan, list) else plan
    scans = _scans_of(plan, Prompt._meta.db_table)
    assert scans, plan
    for scan in scans:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert "external_id" in scan["Index Cond"] and "project_id" in scan["Index Cond"], scan
    assert len(prompt_ids) == 3 and len(candidate_ids) == 5
    assert sorted(map(tuple, found)) == [("old-17", earlier.pk), ("old-5999", earlier.pk)]
