"""Incremental pulls: every export names the `since` of the next pull (X-Next-Since), and a pull
that sends it back misses no vote, even one whose transaction commits after the previous pull."""

import threading
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.exports.cursor import format_since, next_since
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.selectors import Pseudonyms
from tests.conftest import prompt_line
from tests.exports.test_exports import URL, rows

LIST = "/api/v1/projects/demo/judgments/"
JOBS = "/api/v1/projects/demo/exports/"


def judge_one(project, user, choice: str = "left") -> Judgment:
    lease = assignment_next(project=project, annotator=user)
    assert lease is not None
    return judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice).judgment


def key(judgment: Judgment) -> tuple[int, str]:
    """A vote's key in the judgments export: its comparison and its annotator's pseudonym."""
    return judgment.comparison_id, Pseudonyms(judgment.comparison.project)(judgment.annotator_id)


def keys(votes: list[dict]) -> set[tuple[int, str]]:
    return {(v["comparison_id"], v["annotator"]) for v in votes}


def header_time(response) -> datetime:
    value = response["X-Next-Since"]
    assert value.endswith("Z"), value  # no + to escape in a query string
    moment = parse_datetime(value)
    assert moment is not None and moment.tzinfo is not None
    return moment


def pull(api, bob, format: str, **params) -> tuple[list[dict], datetime]:
    response = api(bob).get(URL, {"format": format, **params})
    return rows(response), header_time(response)


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["trl", "kto", "judgments", "arena", "openai"])
def test_every_export_names_the_next_since_a_settle_window_before_it_began(
    api, bob, project, annotators, import_rows, settings, format
):
    settings.EXPORT_SINCE_SETTLE = 45
    import_rows(prompt_line("p1"))
    judge_one(project, annotators[0])
    before = timezone.now()
    _, upcoming = pull(api, bob, format)
    after = timezone.now()
    assert before - timedelta(seconds=45) <= upcoming <= after - timedelta(seconds=45)
    # The value goes back as `since` as it is.
    response = api(bob).get(URL, {"format": format, "since": format_since(upcoming)})
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_pull_with_the_next_since_gets_the_new_votes_and_the_settle_window_again(
    api, bob, project, annotators, import_rows, settings
):
    settings.EXPORT_SINCE_SETTLE = 60
    import_rows(prompt_line("old"), prompt_line("recent"), prompt_line("new"))
    first = judge_one(project, annotators[0])
    recent = judge_one(project, annotators[0])
    now = timezone.now()
    Judgment.objects.filter(pk=first.pk).update(created_at=now - timedelta(minutes=10))
    # Stamped 20 s before the pull: inside the settle window, so it comes again.
    Judgment.objects.filter(pk=recent.pk).update(created_at=now - timedelta(seconds=20))
    votes, upcoming = pull(api, bob, "judgments")
    assert keys(votes) == {key(first), key(recent)}
    new = judge_one(project, annotators[0])
    again, _ = pull(api, bob, "judgments", since=format_since(upcoming))
    assert keys(again) == {key(recent), key(new)}
    pairs, _ = pull(api, bob, "trl", min_votes=1, since=format_since(upcoming))
    assert {p["comparison_id"] for p in pairs} == {recent.comparison_id, new.comparison_id}


@pytest.mark.django_db
def test_the_judgments_list_and_the_command_name_it_too(
    api, bob, project, annotators, import_rows, tmp_path
):
    import_rows(prompt_line("p1"))
    judge_one(project, annotators[0])
    before = next_since()
    response = api(bob).get(LIST)
    assert response.status_code == 200
    assert before <= header_time(response) <= next_since()
    err = StringIO()
    call_command(
        "export", "demo", "--format", "judgments", "-o", str(tmp_path / "j.jsonl"), stderr=err
    )
    printed = err.getvalue().strip()
    assert printed.startswith("next since: ")
    moment = parse_datetime(printed.removeprefix("next since: "))
    assert moment is not None and before <= moment <= next_since()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_vote_committed_after_a_pull_it_predates_is_in_the_next_pull(
    api, bob, project, annotators, import_rows
):
    """A real transaction stamps a judgment, and commits only after a pull has read (without it)
    and named its next `since`: the next pull has it. The reason for the settle window."""
    import_rows(prompt_line("p1"), prompt_line("p2"))
    judge_one(project, annotators[0])
    stamped, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    late: list[Judgment] = []

    def slow_vote() -> None:
        try:
            with transaction.atomic():
                late.append(judge_one(project, annotators[1]))
                stamped.set()
                assert release.wait(timeout=60)
        except BaseException as exc:  # reported below
            errors.append(exc)
            stamped.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_vote)
    thread.start()
    assert stamped.wait(timeout=60)
    votes, upcoming = pull(api, bob, "judgments")
    release.set()
    thread.join(timeout=60)
    assert not errors, errors
    assert late and key(late[0]) not in keys(votes)  # not committed when it read
    again, _ = pull(api, bob, "judgments", since=format_since(upcoming))
    assert key(late[0]) in keys(again)


@pytest.mark.django_db
def test_a_background_export_names_the_next_since_once_done(
    api, bob, project, annotators, import_rows, settings, tmp_path
):
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.EXPORT_SINCE_SETTLE = 30
    import_rows(prompt_line("p1"))
    judge_one(project, annotators[0])
    before = timezone.now()
    response = api(bob).post(JOBS, {"format": "judgments"}, format="json")
    job = response.json()
    assert job["status"] == "done", job  # Celery is eager in tests
    started = parse_datetime(job["started_at"])
    assert started is not None and before <= started
    upcoming = parse_datetime(job["next_since"])
    assert upcoming == started - timedelta(seconds=30)
    assert job["next_since"].endswith("Z")
    shown = api(bob).get(job["url"]).json()
    assert shown["next_since"] == job["next_since"]


@pytest.mark.django_db
def test_a_job_not_done_names_no_next_since(api, bob, project, annotators, import_rows):
    from annotate.celery import app

    import_rows(prompt_line("p1"))
    judge_one(project, annotators[0])
    app.conf.task_always_eager = False
    try:
        job = api(bob).post(JOBS, {"format": "judgments"}, format="json").json()
    finally:
        app.conf.task_always_eager = True
    assert (job["status"], job["next_since"]) == ("queued", None)
