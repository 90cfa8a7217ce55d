"""The fixed cast of the suite, and helpers to build import files.

- alice: staff.
- bob: lead of `project`.
- ann, ben, cat: annotators in `project`.
- charlie: a user with no access to anything.
"""

import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.batches.models import Batch
from apps.batches.services import batch_import
from apps.judging.rendering import renderings_for_batch
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.workers import Worker, forget_queue, worker_start

ON_POSTGRES = str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql")
HAS_REDIS = bool(settings.REDIS_URL)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """On SQLite, test in a database file (in memory where /dev/shm is), not in Django's default.

    Django's default SQLite test database lives in memory, and a live server then shares the test
    thread's one connection among all its request threads. Two requests at once (a page's poll
    beside an API call) use one connection from two threads; that hung the suite. With a file,
    every thread has its own connection and SQLite's own locking orders them, as under `make run`.
    """
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        yield
        return
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private folder in it
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="annotate-tests-", dir=shm))
    else:
        folder = tmp_path_factory.mktemp("sqlite")
    test_settings = cast(dict[str, Any], database.setdefault("TEST", {}))
    test_settings["NAME"] = str(folder / "test.sqlite3")
    yield
    shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords and not ON_POSTGRES:
            item.add_marker(skip_pg)
        # A browser test is slow whatever its file says.
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.slow)


def prompt_line(
    pid: str = "p-1",
    prompt: Any = "What is 2 + 2?",
    n: int = 2,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": pid,
        "prompt": prompt,
        "candidates": [
            {"id": f"c{i}", "text": f"Answer {i} to {pid}", "model": f"model-{i}"}
            for i in range(1, n + 1)
        ],
        **extra,
    }


def jsonl(*rows: Any) -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, *, staff: bool = False, password: str = "pw-for-tests") -> User:
        user = User.objects.create_user(
            username, email=f"{username}@example.com", password=password, is_staff=staff
        )
        return user

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice", staff=True)


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def charlie(make_user: Callable[..., User]) -> User:
    return make_user("charlie")


@pytest.fixture
def annotators(make_user: Callable[..., User]) -> list[User]:
    return [make_user(name) for name in ("ann", "ben", "cat")]


@pytest.fixture
def project(alice: User, bob: User, annotators: list[User]) -> Project:
    project = project_create(slug="demo", name="Demo", created_by=alice, overlap=3)
    membership_add(project=project, user=bob, role="lead")
    for user in annotators:
        membership_add(project=project, user=user, role="annotator")
    return project


@pytest.fixture
def import_rows(project: Project) -> Callable[..., Batch]:
    def load(*rows: Any, target: Project | None = None) -> Batch:
        data = jsonl(*rows)
        batch = batch_import(
            project=target or project, source=io.BytesIO(data), size=len(data), background=False
        )
        # What the rendering task sent on the import's commit does (tests run inside a
        # transaction that never commits): tests/judging/test_rendering.py tests the sending itself.
        renderings_for_batch(batch_id=batch.pk, seconds=60)
        return batch

    return load


@pytest.fixture
def lead(client: Client, bob: User, project: Project) -> Client:
    """The test client, logged in as the project's only lead (bob). tests/exports/test_admin.py
    has one of its own that leaves the project's other members in place."""
    project.memberships.exclude(user=bob).exclude(role="annotator").delete()
    client.force_login(bob)
    return client


@pytest.fixture
def other(make_user: Callable[..., User]) -> Project:
    """A second project, led by dora, with an annotator of its own (eve). The admin tests of
    exports and projects have their own, with data in it."""
    project = project_create(slug="other", name="Other project")
    membership_add(project=project, user=make_user("dora"), role="lead")
    membership_add(project=project, user=make_user("eve"), role="annotator")
    return project


def events(action: str, **filters: Any) -> list[AuditEvent]:
    """The audit events of `action` (and filters), oldest first."""
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("id"))


@pytest.fixture
def batch(import_rows: Callable[..., Batch]) -> Batch:
    """Five prompts of three candidates: 15 comparisons."""
    return import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 6)))


def api_client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api() -> Callable[[User | None], APIClient]:
    return api_client_for


@pytest.fixture(autouse=True)
def _eager_by_default(settings: Any) -> None:
    # Hashing with PBKDF2 costs ~0.25 s a user; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Unit tests run tasks in-process; tests of the real worker start one (see test_worker.py).
    from annotate.celery import app

    app.conf.task_always_eager = True
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def no_worker(_eager_by_default: None) -> Iterator[list[tuple[str, Any]]]:
    """Tasks are sent to a queue of this test's own that no worker consumes, as a web process
    with a broker but no worker running would send them. Yields the (task name, args) sent."""
    from celery.signals import before_task_publish

    from annotate.celery import app

    sent: list[tuple[str, Any]] = []

    def record(sender: str | None = None, body: Any = None, **_: Any) -> None:
        sent.append((str(sender), list(body[0])))  # the message body: (args, kwargs, embed)

    queue = f"annotate-test-{uuid.uuid4().hex[:12]}"
    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    before_task_publish.connect(record, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(record)
        app.conf.task_always_eager, app.conf.task_default_queue = saved
        if HAS_REDIS:
            forget_queue(queue)


def stop_process(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    """Stops a server or worker the tests started: politely, then for sure."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


# Tests of a REAL Celery worker (tests/workers.py): they need PostgreSQL and Redis.


@pytest.fixture(scope="module")
def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker process for the test module, on its own queue; always terminated at the end."""
    queue = f"annotate-test-{uuid.uuid4().hex[:12]}"
    running = worker_start(queue, tmp_path_factory.mktemp("worker") / "worker.log", name=queue)
    try:
        running.wait_ready()
        yield running
    finally:
        stop_process(running.process, timeout=30)
        forget_queue(queue)


@pytest.fixture
def via_worker(worker: Worker, _eager_by_default: None) -> Iterator[Worker]:
    """Sends this test's tasks to the module's worker (they are otherwise eager); prints the
    worker's output of the test, which pytest shows when the test failed."""
    from annotate.celery import app

    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = worker.queue
    start = worker.log_size()
    try:
        yield worker
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue = saved
        print(f"--- worker log during this test ---\n{worker.log(start)}")


@pytest.fixture
def queue(settings: Any, tmp_path: Path) -> Iterator[str]:
    """A queue of this test's own; this process sends its tasks there, not eagerly. The
    workers start_worker starts on it share this test's EXPORT_ROOT."""
    from annotate.celery import app

    name = f"annotate-test-{uuid.uuid4().hex[:12]}"
    settings.EXPORT_ROOT = tmp_path / "exports"
    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = name
    try:
        yield name
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue = saved
        forget_queue(name)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """The workers a test starts (start_worker); each stopped at the end (a killed one is
    already gone), and its log printed."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            stop_process(worker.process, timeout=30)
        print(f"--- {worker.log_path.name} ---\n{worker.log()}")


def db_vendor() -> str:
    return connection.vendor
