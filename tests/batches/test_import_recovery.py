"""Background imports that stall: the beat sweep re-sends a lost message, re-queues a run whose
worker died and fails one out of attempts; a run that was superseded stores nothing; a lead
cancels an import or deletes a batch that holds no judgments, from the admin and the API.

The worker itself (killed mid-import) is in tests/batches/test_import_worker.py.
"""

import contextlib
import io
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.batches.models import Batch, BatchSource, BatchStatus, Candidate, Comparison, Prompt
from apps.batches.services import (
    ImportSuperseded,
    _batch_import_attempt,
    batch_import,
    batch_import_claim,
    batch_import_progress,
    batch_imports_sweep,
)
from apps.batches.tasks import batch_import_task
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from tests.conftest import jsonl, prompt_line

TASK = "apps.batches.tasks.batch_import_task"
PROMPTS = 20  # three candidates each: 60 candidates, 60 comparisons


def queued_import(project: Project, bob: User, prompts: int = PROMPTS) -> Batch:
    """A background import whose task was sent (to a queue no worker reads)."""
    data = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(prompts)))
    return batch_import(
        project=project, source=io.BytesIO(data), size=len(data), created_by=bob, background=True
    )


def later(settings: Any, factor: float = 1.5) -> Any:
    return timezone.now() + timedelta(seconds=settings.IMPORT_STALE_AFTER * factor)


def counts(batch: Batch) -> tuple[int, int, int]:
    return (
        Prompt.objects.filter(batch=batch).count(),
        Candidate.objects.filter(prompt__batch=batch).count(),
        Comparison.objects.filter(batch=batch).count(),
    )


def sent_for(sent: list[tuple[str, Any]], batch: Batch) -> int:
    return sent.count((TASK, [batch.pk]))


@contextlib.contextmanager
def storing_its_rows(batch: Batch) -> Iterator[None]:
    """Holds the batch row's lock in another connection, as a run storing its rows does, for
    the length of the block."""
    locked, release = threading.Event(), threading.Event()

    def storing() -> None:
        try:
            with transaction.atomic():
                Batch.objects.select_for_update().get(pk=batch.pk)
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    thread = threading.Thread(target=storing)
    thread.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        thread.join()


# The sweep.


def test_an_import_whose_message_was_lost_is_sent_again_and_then_imports(
    project, bob, no_worker, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        batch = queued_import(project, bob)
    assert sent_for(no_worker, batch) == 1
    # Within the grace period, nothing to do: a worker may just be busy.
    assert batch_imports_sweep() == {"requeued": 0, "failed": 0, "resent": 0}

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_imports_sweep(later(settings)) == {"requeued": 0, "failed": 0, "resent": 1}

    assert sent_for(no_worker, batch) == 2
    batch.refresh_from_db()
    assert (batch.status, batch.import_running, batch.import_attempts) == ("importing", False, 0)
    assert "no worker took it" in batch.import_note
    assert batch_import_progress(batch)["phase"] == "queued"
    # The message that comes through is run once; a duplicate delivery does nothing.
    assert batch_import_task(batch.pk) == BatchStatus.ACTIVE
    assert batch_import_task(batch.pk) == BatchStatus.ACTIVE
    batch.refresh_from_db()
    assert (batch.prompt_count, batch.comparison_count, batch.import_attempts) == (20, 60, 1)
    assert counts(batch) == (20, 60, 60)
    assert not batch.import_running


def test_an_import_whose_worker_died_is_requeued_and_the_next_attempt_imports(
    project, bob, no_worker, settings, django_capture_on_commit_callbacks
):
    batch = queued_import(project, bob)
    assert batch_import_claim(batch_id=batch.pk) == 1  # a worker took it ... and died
    Batch.objects.filter(pk=batch.pk).update(rows_done=7)
    # A fresh heartbeat: the run is alive, and neither the sweep nor a redelivery touches it.
    assert batch_imports_sweep()["requeued"] == 0
    assert batch_import_claim(batch_id=batch.pk) is None

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_imports_sweep(later(settings)) == {"requeued": 1, "failed": 0, "resent": 0}

    assert sent_for(no_worker, batch) == 1
    batch.refresh_from_db()
    assert (batch.import_running, batch.import_attempts, batch.rows_done) == (False, 1, 0)
    assert batch.import_note == (
        f"attempt 1 stopped (no heartbeat for {settings.IMPORT_STALE_AFTER} s: its worker died "
        "or hung); re-queued"
    )
    progress = batch_import_progress(batch)
    assert (progress["phase"], progress["attempt"], progress["running"]) == ("queued", 1, False)
    assert batch_import_task(batch.pk) == BatchStatus.ACTIVE
    batch.refresh_from_db()
    assert (batch.status, batch.import_attempts, batch.import_running) == ("active", 2, False)
    assert counts(batch) == (20, 60, 60)
    assert not BatchSource.objects.filter(batch=batch).exists()


def test_an_import_out_of_attempts_is_failed_with_the_reason(project, bob, no_worker, settings):
    settings.IMPORT_MAX_ATTEMPTS = 2
    batch = queued_import(project, bob)
    assert batch_import_claim(batch_id=batch.pk) == 1
    assert batch_imports_sweep(later(settings))["requeued"] == 1
    assert batch_import_claim(batch_id=batch.pk) == 2  # ... and that worker died too

    assert batch_imports_sweep(later(settings, 3)) == {"requeued": 0, "failed": 1, "resent": 0}

    batch.refresh_from_db()
    assert (batch.status, batch.import_running, batch.import_attempts) == ("failed", False, 2)
    assert batch.finished_at is not None
    assert batch.errors == [
        {
            "line": None,
            "error": f"the import stopped: attempt 2 of 2 had no heartbeat for "
            f"{settings.IMPORT_STALE_AFTER} s (its worker died or hung), and no attempts are "
            "left; upload the file again",
        }
    ]
    assert not BatchSource.objects.filter(batch=batch).exists()
    assert counts(batch) == (0, 0, 0)
    failed = AuditEvent.objects.get(action="import_failed", target_id=str(batch.pk))
    assert failed.details["errors"] == 1
    assert "no attempts" in failed.details["first_errors"][0]["error"]
    # A failed import is left alone by later sweeps, and a late message does nothing.
    assert batch_imports_sweep(later(settings, 10)) == {"requeued": 0, "failed": 0, "resent": 0}
    assert batch_import_task(batch.pk) == BatchStatus.FAILED


def test_a_superseded_run_stores_nothing_and_stops(project, bob, no_worker, settings):
    """A run re-queued by the sweep (it only hung) must not store the batch a second time once
    the next attempt has: its writes are conditional on its attempt number."""
    batch = queued_import(project, bob)
    assert batch_import_claim(batch_id=batch.pk) == 1
    assert batch_imports_sweep(later(settings))["requeued"] == 1
    assert batch_import_task(batch.pk) == BatchStatus.ACTIVE  # attempt 2
    BatchSource.objects.create(batch=batch, data=jsonl(prompt_line("p-0", n=3)))

    with pytest.raises(ImportSuperseded):
        _batch_import_attempt(batch.pk, 1)  # attempt 1 wakes up

    batch.refresh_from_db()
    assert (batch.status, batch.import_attempts, batch.prompt_count) == ("active", 2, 20)
    assert counts(batch) == (20, 60, 60)


def test_a_run_that_is_cancelled_mid_check_stops_at_its_next_progress_write(
    project, bob, no_worker, monkeypatch
):
    from apps.batches import services

    batch = queued_import(project, bob, prompts=5)
    attempt = batch_import_claim(batch_id=batch.pk)
    assert attempt == 1
    seen: list[int] = []
    check = services._check_file

    def check_cancelled_midway(
        project: Any, stream: Any, progress: Any = None, **options: Any
    ) -> Any:
        def cancelling(lines: int) -> None:
            seen.append(lines)
            if lines == 2:  # the lead cancels while the worker checks the file
                assert services.batch_import_cancel(batch=batch, by=bob).status == "cancelled"
            progress(lines)

        return check(project, stream, cancelling, **options)

    monkeypatch.setattr(services, "_check_file", check_cancelled_midway)
    monkeypatch.setattr(services, "CHECK_CHUNK", 2)  # progress every 2 lines
    with pytest.raises(ImportSuperseded):
        _batch_import_attempt(batch.pk, attempt)
    assert seen == [2]  # it stopped at the first write after the cancel
    batch.refresh_from_db()
    assert batch.status == "cancelled"
    assert batch.errors == [{"line": None, "error": "cancelled by bob during attempt 1"}]
    assert counts(batch) == (0, 0, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_an_import_that_is_storing_its_rows(project, bob, no_worker, settings):
    """A run storing the rows holds the batch row's lock, and writes no heartbeat meanwhile:
    the sweep skips the locked row instead of taking the run for dead."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    batch = queued_import(project, bob)
    assert batch_import_claim(batch_id=batch.pk) == 1
    with storing_its_rows(batch):
        assert batch_imports_sweep(later(settings)) == {"requeued": 0, "failed": 0, "resent": 0}
    assert Batch.objects.get(pk=batch.pk).import_running
    assert batch_imports_sweep(later(settings))["requeued"] == 1


# Cancel and delete: the service through the API and the admin.


@pytest.fixture
def other_lead(make_user):
    from apps.projects.services import membership_add, project_create

    project = project_create(slug="other", name="Other project")
    dora = make_user("dora")
    membership_add(project=project, user=dora, role="lead")
    return dora


def test_the_api_cancels_a_queued_import_and_a_late_message_does_nothing(
    project, bob, no_worker, api
):
    batch = queued_import(project, bob)

    response = api(bob).post(f"/api/v1/batches/{batch.pk}/cancel/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["errors"] == [{"line": None, "error": "cancelled by bob waiting for a worker"}]
    assert not BatchSource.objects.filter(batch=batch).exists()
    event = AuditEvent.objects.get(action="batch_status", target_id=str(batch.pk))
    assert event.actor == bob and event.details["action"] == "cancel"
    assert event.details["status"] == {"old": "importing", "new": "cancelled"}
    assert batch_import_task(batch.pk) == BatchStatus.CANCELLED
    assert counts(batch) == (0, 0, 0)
    again = api(bob).post(f"/api/v1/batches/{batch.pk}/cancel/")
    assert again.status_code == 409
    assert "only an import in progress can be cancelled" in again.json()["detail"]


def test_the_api_refuses_cancel_and_delete_to_anyone_but_the_projects_leads(
    project, bob, no_worker, api, other_lead, annotators
):
    batch = queued_import(project, bob)
    for user in (other_lead, annotators[0]):
        assert api(user).post(f"/api/v1/batches/{batch.pk}/cancel/").status_code == 404
        assert api(user).delete(f"/api/v1/batches/{batch.pk}/").status_code == 404
    assert api(None).delete(f"/api/v1/batches/{batch.pk}/").status_code in (401, 403)
    batch.refresh_from_db()
    assert batch.status == "importing"
    assert not AuditEvent.objects.filter(action__in=["batch_status", "batch_deleted"]).exists()


def test_the_api_deletes_a_stuck_import_and_a_failed_one(project, bob, no_worker, api, settings):
    stuck = queued_import(project, bob)
    assert batch_import_claim(batch_id=stuck.pk) == 1

    response = api(bob).delete(f"/api/v1/batches/{stuck.pk}/")

    assert response.status_code == 204, response.content
    assert not Batch.objects.filter(pk=stuck.pk).exists()
    assert not BatchSource.objects.exists()
    event = AuditEvent.objects.get(action="batch_deleted")
    assert event.actor == bob and event.target_id == str(stuck.pk)
    assert event.details == {
        "name": "",
        "status": "importing",
        "prompts": 0,
        "comparisons": 0,
        "import_attempts": 1,
    }
    # The run that held it stops at its next write; the next message finds nothing.
    with pytest.raises(ImportSuperseded):
        _batch_import_attempt(stuck.pk, 1)
    assert batch_import_task(stuck.pk) == ""

    failed = batch_import(
        project=project, source=io.BytesIO(b"{oops\n"), size=6, background=True, created_by=bob
    )
    batch_import_task(failed.pk)
    failed.refresh_from_db()
    assert failed.status == "failed"
    assert api(bob).delete(f"/api/v1/batches/{failed.pk}/").status_code == 204
    assert not Batch.objects.filter(project=project).exists()


def test_a_batch_with_judgments_or_serving_work_is_not_deleted(project, bob, annotators, api):
    data = jsonl(*(prompt_line(f"p-{i}", n=2) for i in range(3)))
    batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))

    active = api(bob).delete(f"/api/v1/batches/{batch.pk}/")
    assert active.status_code == 409
    assert "is active: close it first" in active.json()["detail"]

    lease = assignment_next(project=project, annotator=annotators[0])
    assert lease is not None
    judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.DONE)
    judged = api(bob).delete(f"/api/v1/batches/{batch.pk}/")
    assert judged.status_code == 409
    assert judged.json()["detail"] == (
        f"{batch} holds 1 judgment(s): it cannot be deleted, since judgments are kept for good "
        "(close it instead)."
    )
    assert counts(batch) == (3, 6, 3)
    assert not AuditEvent.objects.filter(action="batch_deleted").exists()


def test_a_closed_batch_with_leases_out_waits_and_one_without_is_deleted(
    project, bob, annotators, api
):
    data = jsonl(*(prompt_line(f"p-{i}", n=2) for i in range(3)))
    batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    assert assignment_next(project=project, annotator=annotators[0]) is not None
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.DONE)
    leased = api(bob).delete(f"/api/v1/batches/{batch.pk}/")
    assert leased.status_code == 409 and "leased to annotators now" in leased.json()["detail"]

    Comparison.objects.filter(batch=batch).update(lease_count=0)
    assert api(bob).delete(f"/api/v1/batches/{batch.pk}/").status_code == 204
    assert not Prompt.objects.filter(project=project).exists()


def admin_act(client: Any, batch: Batch, action: str, **data: str) -> Any:
    return client.post(f"/admin/batches/batch/{batch.pk}/act/{action}/", data)


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def test_the_admin_cancels_and_deletes_with_its_buttons_and_actions(
    client, project, bob, no_worker
):
    client.force_login(bob)
    first, second, third = (queued_import(project, bob, prompts=2 + i) for i in range(3))
    page = client.get(f"/admin/batches/batch/{first.pk}/change/").content.decode()
    assert "/act/cancel/" in page and 'id="batch-delete"' in page
    assert "waiting for a worker (2 lines)" in page

    admin_act(client, first, "cancel")
    first.refresh_from_db()
    assert first.status == "cancelled"
    page = client.get(f"/admin/batches/batch/{first.pk}/change/").content.decode()
    assert "Import cancelled." in page and "cancelled by bob waiting for a worker" in page
    assert "/act/cancel/" not in page and 'id="batch-delete"' in page

    # The delete button wants its box ticked.
    admin_act(client, first, "delete")
    assert Batch.objects.filter(pk=first.pk).exists()
    response = admin_act(client, first, "delete", confirm="yes")
    assert response["Location"] == "/admin/batches/batch/"
    assert not Batch.objects.filter(pk=first.pk).exists()

    client.post(
        "/admin/batches/batch/",
        {"action": "cancel_imports", "_selected_action": [second.pk, third.pk]},
    )
    assert set(Batch.objects.values_list("status", flat=True)) == {"cancelled"}
    client.post(
        "/admin/batches/batch/",
        {"action": "delete_batches", "_selected_action": [second.pk, third.pk]},
    )
    assert not Batch.objects.exists()
    deleted = AuditEvent.objects.filter(action="batch_deleted", actor=bob)
    assert sorted(deleted.values_list("target_id", flat=True)) == sorted(
        str(b.pk) for b in (first, second, third)
    )
    # Django's own delete page is off: it would skip the rules and the audit log.
    active = batch_import(
        project=project, source=io.BytesIO(jsonl(prompt_line("x"))), size=20, created_by=bob
    )
    assert client.get(f"/admin/batches/batch/{active.pk}/delete/").status_code == 403


def test_the_admin_refuses_another_projects_batch_and_explains_a_refusal(
    client, project, bob, no_worker, other_lead
):
    batch = queued_import(project, bob)
    client.force_login(other_lead)
    assert admin_act(client, batch, "cancel").status_code == 403
    assert admin_act(client, batch, "delete", confirm="yes").status_code == 403
    client.post(
        "/admin/batches/batch/", {"action": "delete_batches", "_selected_action": [batch.pk]}
    )
    assert Batch.objects.get(pk=batch.pk).status == "importing"

    client.force_login(bob)
    data = jsonl(prompt_line("y"))
    active = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    response = client.post(
        "/admin/batches/batch/",
        {"action": "cancel_imports", "_selected_action": [active.pk]},
        follow=True,
    )
    assert any(
        "is active: only an import in progress can be cancelled" in m for m in messages_of(response)
    )


def test_the_admin_shows_each_state_of_a_background_import(
    client, project, bob, no_worker, settings
):
    """Waiting, re-sent, running (attempt n of N), re-queued, failed out of attempts."""
    client.force_login(bob)
    batch = queued_import(project, bob)
    url = f"/admin/batches/batch/{batch.pk}/progress/"

    def fragment() -> str:
        return " ".join(client.get(url, HTTP_HX_REQUEST="true").content.decode().split())

    assert "waiting for a worker (20 lines)" in fragment()
    batch_imports_sweep(later(settings))
    assert "No worker took it within 300 s; sent again at" in fragment()
    batch_import_claim(batch_id=batch.pk)
    assert "checking line 0 of 20" in fragment()
    batch_imports_sweep(later(settings, 3))
    html = fragment()
    assert "waiting for a worker (20 lines), for attempt 2 of 3" in html
    assert "Attempt 1 stopped (no heartbeat for 300 s" in html
    listing = client.get("/admin/batches/batch/").content.decode()
    assert "importing: re-queued after attempt 1, waiting for a worker" in listing
    batch_import_claim(batch_id=batch.pk)
    Batch.objects.filter(pk=batch.pk).update(rows_done=10)
    assert "checking line 10 of 20 (attempt 2 of 3)" in fragment()
    listing = client.get("/admin/batches/batch/").content.decode()
    assert "importing: attempt 2 of 3, checking" in listing
    settings.IMPORT_MAX_ATTEMPTS = 2
    batch_imports_sweep(later(settings, 5))
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true"
    html = response.content.decode()
    assert "Import failed." in html and "attempt 2 of 2 had no heartbeat" in html


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_import_storing_its_rows_is_neither_cancelled_nor_deleted(project, bob, no_worker, api):
    """The store is one transaction under the batch row's lock: a cancel or a delete waits a
    moment for the lock, then says why it cannot, and changes nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    batch = queued_import(project, bob)
    assert batch_import_claim(batch_id=batch.pk) == 1
    with storing_its_rows(batch):
        cancel = api(bob).post(f"/api/v1/batches/{batch.pk}/cancel/")
        delete = api(bob).delete(f"/api/v1/batches/{batch.pk}/")
    for response, verb in ((cancel, "cancelled"), (delete, "deleted")):
        assert response.status_code == 409, response.content
        assert response.json()["detail"] == (
            f"{batch} cannot be {verb} now: its import is storing the rows, in one "
            "transaction, and will be active in a moment (close it then, or delete it while "
            "nobody has judged it)."
        )
    batch.refresh_from_db()
    assert (batch.status, batch.import_running) == ("importing", True)
    assert not AuditEvent.objects.filter(action__in=["batch_status", "batch_deleted"]).exists()
