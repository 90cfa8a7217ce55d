"""Annotation goes on without Redis, and a lost database connection loses no judgment.

The first half runs the real app (gunicorn, as in production) with REDIS_URL pointing at a port
where nothing listens: the cache and the throttle fail open, the judging page and the HTMX judge
work, the dashboard says what it can, and what needs the broker (a background export, a
background import) answers 503 quickly and leaves no row. The second half terminates PostgreSQL
connections while annotators submit through the API of a live server.
"""

import functools
import json
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache

import annotate.cache
from annotate.settings import cache_settings
from tests.annotate.test_delivery import clean_env, free_port, serving
from tests.conftest import HAS_REDIS, jsonl, prompt_line


def reachable_redis_url() -> str | None:
    """The suite's Redis, or else a local one on its default port (database 15, which nothing
    else here uses): this test needs a Redis to come back to, not the suite's settings."""
    import redis

    url = settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except redis.RedisError:
        return None
    return url


REDIS_TO_COME_BACK_TO = reachable_redis_url()

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-for-tests"

# Made in the server's own SQLite database before it starts (Redis is not needed for it).
SETUP = """
import io, json
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from apps.batches.services import batch_import
from apps.projects.services import membership_add, project_create
alice = User.objects.create_user("alice", password="{pw}", is_staff=True)
bob = User.objects.create_user("bob", password="{pw}")
ann = User.objects.create_user("ann", password="{pw}")
cat = User.objects.create_user("cat", password="{pw}")
project = project_create(slug="demo", name="Demo", created_by=alice, overlap=3)
membership_add(project=project, user=bob, role="lead")
membership_add(project=project, user=ann, role="annotator")
membership_add(project=project, user=cat, role="annotator")
data = {data!r}
batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
print(json.dumps({{u.username: Token.objects.create(user=u).key for u in (bob, ann, cat)}}))
"""


# --- the app against a dead Redis ---------------------------------------------------------


class App:
    def __init__(self, base: str, db: Path, tokens: dict[str, str]) -> None:
        self.base = base
        self.db = db
        self.tokens = tokens

    def api(self, user: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens[user]}"
        return session

    def browser(self, user: str) -> requests.Session:
        session = requests.Session()
        page = session.get(f"{self.base}/accounts/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text
        response = session.post(
            f"{self.base}/accounts/login/",
            data={"username": user, "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
            headers={"Referer": f"{self.base}/accounts/login/"},
            timeout=30,
        )
        assert response.status_code == 200 and "sessionid" in session.cookies, response.text
        return session

    def count(self, sql: str, *params: object) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute(sql, params).fetchone()[0])


@pytest.fixture(scope="module")
def dead_redis_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """gunicorn serving the app with REDIS_URL on a closed port, on a SQLite file of its own."""
    tmp = tmp_path_factory.mktemp("dead-redis")
    db = tmp / "app.sqlite3"
    data = jsonl(*(prompt_line(f"p-{i}", n=3) for i in range(5)))
    base_env = clean_env(
        DATABASE_URL=f"sqlite:///{db}",
        DJANGO_SETTINGS_MODULE="annotate.settings",
        XDG_RUNTIME_DIR=str(tmp),
    )
    for command in (
        ["migrate", "--noinput", "--verbosity", "0"],
        ["shell", "-c", SETUP.format(pw=PASSWORD, data=data)],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=base_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    tokens = json.loads(done.stdout.strip().splitlines()[-1])
    env = {
        **base_env,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "IMPORT_BACKGROUND_BYTES": "1",  # every upload goes to the (absent) worker
        "API_TOKEN_RATE": "3/min",  # low, so that a throttle reading the cache would be seen
    }
    options = ("--worker-class", "gthread", "--threads", "4")
    with serving(env, tmp / "gunicorn.log", *options) as base:
        yield App(base, db, tokens)


def test_without_redis_api_tokens_pass_the_throttle(dead_redis_app: App) -> None:
    """The throttle counts in the cache: with Redis gone it lets requests through (fails open)
    instead of answering 500. The rate is 3/min here: five requests pass, uncounted."""
    app = dead_redis_app
    api = app.api("cat")
    for _ in range(5):
        response = api.get(f"{app.base}/api/v1/me/", timeout=30)
        assert response.status_code == 200, response.text
    lease = api.post(f"{app.base}/api/v1/projects/demo/assignments/next/", timeout=30)
    assert lease.status_code == 200, lease.text
    judged = api.post(
        f"{app.base}/api/v1/assignments/{lease.json()['id']}/judgment/",
        json={"choice": "left", "idempotency_key": "api-1"},
        timeout=30,
    )
    assert judged.status_code == 201, judged.text
    assert app.count("SELECT count(*) FROM judging_judgment WHERE id = ?", judged.json()["id"])


def test_without_redis_the_judging_page_and_the_htmx_judge_work(dead_redis_app: App) -> None:
    app = dead_redis_app
    browser = app.browser("ann")
    before = app.count("SELECT count(*) FROM judging_judgment")
    page = browser.get(f"{app.base}/p/demo/", timeout=30)
    assert page.status_code == 200, page.text
    action = re.search(r'<form class="judge" method="post" action="([^"]+)"', page.text)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
    assert action and key, page.text
    judged = browser.post(
        f"{app.base}{action[1]}",
        data={"choice": "right", "idempotency_key": key[1]},
        headers={
            "HX-Request": "true",
            "X-CSRFToken": str(browser.cookies["csrftoken"]),
            "Referer": f"{app.base}/p/demo/",
        },
        timeout=30,
    )
    # Stored, and answered with the next comparison (the page's card), not a 500.
    assert judged.status_code == 200, judged.text
    assert 'id="comparison"' in judged.text
    assert app.count("SELECT count(*) FROM judging_judgment") == before + 1
    assert app.count("SELECT count(*) FROM judging_judgment WHERE idempotency_key = ?", key[1])


def test_without_redis_the_dashboard_computes_a_small_projects_figures(
    dead_redis_app: App,
) -> None:
    app = dead_redis_app
    browser = app.browser("bob")
    for path in ("/lead/p/demo/", "/lead/p/demo/figures/"):
        page = browser.get(f"{app.base}{path}", timeout=30)
        assert page.status_code == 200, page.text
        assert 'data-testid="cache-down"' in page.text
        assert "Redis cannot be reached" in page.text


def test_without_redis_a_background_export_is_refused_quickly_and_leaves_no_job(
    dead_redis_app: App,
) -> None:
    app = dead_redis_app
    started = time.monotonic()
    response = app.api("bob").post(
        f"{app.base}/api/v1/projects/demo/exports/", json={"format": "trl"}, timeout=60
    )
    seconds = time.monotonic() - started
    print(f"export job request without Redis: {response.status_code} in {seconds:.3f} s")
    assert response.status_code == 503, response.text
    assert "nothing was created" in response.json()["detail"]
    assert response.headers["Retry-After"]
    assert seconds < 5  # not Celery's ~19 s of retries (the figure is printed above)
    assert app.count("SELECT count(*) FROM exports_exportjob") == 0


def test_without_redis_a_background_import_is_refused_quickly_and_leaves_no_batch(
    dead_redis_app: App,
) -> None:
    app = dead_redis_app
    batches = app.count("SELECT count(*) FROM batches_batch")
    started = time.monotonic()
    response = app.api("bob").post(
        f"{app.base}/api/v1/projects/demo/batches/",
        data=jsonl(prompt_line("new-1"), prompt_line("new-2")),
        headers={"Content-Type": "application/jsonl"},
        timeout=60,
    )
    seconds = time.monotonic() - started
    print(f"background import without Redis: {response.status_code} in {seconds:.3f} s")
    assert response.status_code == 503, response.text
    assert "nothing was created" in response.json()["detail"]
    assert seconds < 5
    assert app.count("SELECT count(*) FROM batches_batch") == batches
    assert app.count("SELECT count(*) FROM batches_batchsource") == 0


def test_without_redis_healthz_says_degraded(dead_redis_app: App) -> None:
    response = requests.get(f"{dead_redis_app.base}/healthz", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["cache"] == "down"
    assert body["broker"] == "down"
    assert body["cache_down_since"]
    assert response.headers["Cache-Control"] == "no-store"


# --- the cache itself, in this process ----------------------------------------------------


@pytest.fixture
def fresh_cache_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's record of Redis outages, new for the test."""
    monkeypatch.setattr(annotate.cache, "_state", annotate.cache._State())


@pytest.fixture
def dead_cache(settings: Any, fresh_cache_state: None) -> None:
    settings.CACHES = cache_settings(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.usefixtures("dead_cache")
def test_the_cache_answers_as_an_empty_cache_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.has_key("k") is False
    assert cache.add("lock", "me", 60) is True  # absent, so "added": a lock is not exclusive
    cache.set("k", 1)
    assert cache.touch("k") is False
    assert cache.delete("k") is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    cache.delete_many(["a"])
    cache.clear()
    with pytest.raises(ValueError, match="not found"):
        cache.incr("n")
    assert cache.get_or_set("g", 5) == 5
    health = annotate.cache.cache_health()
    assert not health.ok and health.down_since is not None
    assert "Connection refused" in health.error or "Error" in health.error
    # Logged once for the whole outage, not once per call.
    warnings = [r for r in caplog.records if r.name == "annotate.cache"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "answering as an empty cache" in warnings[0].getMessage()


@pytest.mark.usefixtures("dead_cache")
def test_while_down_the_cache_leaves_redis_alone_until_the_retry_time(settings: Any) -> None:
    settings.REDIS_RETRY_SECONDS = 60
    assert cache.get("k") is None  # tries, fails, marks down
    client = cache._cache  # type: ignore[attr-defined]
    tried: list[str] = []
    original = client.get

    def spy(*args: Any, **kwargs: Any) -> Any:
        tried.append("get")
        return original(*args, **kwargs)

    client.get = spy
    for _ in range(100):
        assert cache.get("k", 7) == 7
    assert tried == []  # answered at once, without a connection attempt
    assert annotate.cache.cache_health().failures == 101


@pytest.mark.skipif(
    REDIS_TO_COME_BACK_TO is None,
    reason="needs Redis: set REDIS_URL=redis://..., or run one on 127.0.0.1:6379",
)
@pytest.mark.usefixtures("fresh_cache_state")
def test_the_cache_is_used_again_once_redis_is_back(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_RETRY_SECONDS = 0
    settings.CACHES = cache_settings(f"redis://127.0.0.1:{free_port()}/0")
    cache.set("outage-test", 1)
    assert not annotate.cache.cache_health().ok
    settings.CACHES = cache_settings(str(REDIS_TO_COME_BACK_TO))  # the same process, Redis back
    cache.set("outage-test", 2, 30)
    assert cache.get("outage-test") == 2
    assert annotate.cache.cache_health().ok
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    cache.delete("outage-test")


@pytest.mark.django_db
@pytest.mark.usefixtures("dead_cache")
def test_without_redis_the_throttle_lets_token_requests_through(
    settings: Any, api: Callable[[User | None], Any], charlie: User
) -> None:
    settings.API_TOKEN_RATE = "2/min"
    client = api(charlie)
    for _ in range(4):
        assert client.get("/api/v1/me/").status_code == 200


# --- PostgreSQL connections terminated while annotators submit ------------------------------

ANNOTATORS = 8
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.unclean: list[str] = []
        self.acknowledged: dict[str, int] = {}  # idempotency key -> judgment id

    def saw(self, response: requests.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 503:
                detail = response.json()["detail"]
                if "idempotency_key" not in detail or response.headers.get("Retry-After") != "1":
                    self.unclean.append(f"503 {detail!r}")
            elif response.status_code not in (200, 201, 204):
                self.unclean.append(f"{response.status_code} {response.text[:300]}")


def retried(tally: Tally, send: Callable[[], requests.Response]) -> requests.Response:
    """Sends until the answer is not a 503 (the retryable error), as a careful client does."""
    for _ in range(200):
        response = send()
        tally.saw(response)
        if response.status_code != 503:
            return response
        time.sleep(0.01)
    raise AssertionError("still 503 after 200 tries")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_terminated_database_connections_lose_no_acknowledged_judgment(
    live_server: Any, project: Any, make_user: Callable[..., User], import_rows: Any
) -> None:
    import psycopg
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from apps.judging.models import Judgment
    from apps.projects.models import Membership
    from apps.projects.services import membership_add
    from tests.judging.test_concurrency import check_invariants

    import_rows(*(prompt_line(f"t-{i}", n=3) for i in range(10)))  # 30 comparisons, overlap 3
    users = [make_user(f"term{i}") for i in range(ANNOTATORS)]
    tokens = {}
    for user in users:
        membership_add(project=project, user=user, role="annotator")
        tokens[user.pk] = Token.objects.create(user=user).key
    tally = Tally()
    done = threading.Event()
    terminated = [0, 0]  # rounds, backends terminated
    errors: list[BaseException] = []
    base = live_server.url

    def annotate_all(user: User) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {tokens[user.pk]}"
        for _ in range(100):
            lease = retried(
                tally,
                lambda: session.post(f"{base}/api/v1/projects/demo/assignments/next/", timeout=60),
            )
            if lease.status_code == 204:
                return
            assignment = lease.json()["id"]
            key = f"{user.pk}-{assignment}"
            judged = retried(
                tally,
                functools.partial(
                    session.post,
                    f"{base}/api/v1/assignments/{assignment}/judgment/",
                    json={"choice": "left", "idempotency_key": key},
                    timeout=60,
                ),
            )
            if judged.status_code in (200, 201):
                with tally.lock:
                    tally.acknowledged[key] = judged.json()["id"]

    def run(user: User) -> None:
        try:
            annotate_all(user)
        except BaseException as exc:
            errors.append(exc)

    def terminate() -> None:
        dsn = settings_dsn()
        with psycopg.connect(dsn, autocommit=True) as db:
            # Often enough that many requests lose their connection mid-way, rarely enough that
            # each can get through on a later try.
            while not done.wait(random.uniform(0.05, 0.25)):
                row = db.execute(TERMINATE).fetchone()
                terminated[0] += 1
                terminated[1] += int(row[0]) if row else 0

    killer = threading.Thread(target=terminate)
    threads = [threading.Thread(target=run, args=(user,)) for user in users]
    killer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    done.set()
    killer.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "an annotator hung"
    connection.close()  # this thread's connection was terminated too

    print(
        f"terminations: {terminated[0]} rounds, {terminated[1]} backends; "
        f"answers: {dict(tally.statuses)}; acknowledged: {len(tally.acknowledged)}"
    )
    assert not errors, errors
    assert not tally.unclean, tally.unclean[:5]
    assert terminated[1] > 0
    # Every acknowledged judgment is stored, once; nothing else is.
    stored = dict(Judgment.objects.filter(annotator__in=users).values_list("idempotency_key", "id"))
    assert stored == tally.acknowledged
    assert len(tally.acknowledged) == 30 * 3  # every comparison filled to its overlap
    check_invariants(overlap=3)
    for membership in Membership.objects.filter(user__in=users):
        assert (
            membership.judgment_count
            == Judgment.objects.filter(annotator=membership.user, batch__project=project).count()
        )


def settings_dsn() -> str:
    """The test database, for a connection of the test's own (not Django's)."""
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    db = connection.settings_dict
    return make_conninfo(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=db["NAME"],
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("dead_cache")
def test_without_redis_a_large_projects_dashboard_says_its_figures_are_unavailable(
    settings: Any,
    client: Any,
    bob: User,
    project: Any,
    batch: Any,
    annotators: list[User],
    no_worker: list[tuple[str, Any]],
) -> None:
    # Redis can only be down with REDIS_URL set, i.e. with a broker (tasks not in-process, which
    # compute the figures in the request: tests/dashboard/test_dashboard.py).
    from apps.judging.queue import assignment_next, judgment_submit

    lease = assignment_next(project=project, annotator=annotators[0])
    assert lease is not None
    judgment_submit(assignment_id=lease.pk, annotator=annotators[0], choice="left")
    settings.DASHBOARD_INLINE_MAX_JUDGMENTS = 0  # "large": not computed in the request
    client.force_login(bob)
    for path in ("/lead/p/demo/", "/lead/p/demo/figures/"):
        page = client.get(path)
        assert page.status_code == 200
        text = page.content.decode()
        assert 'data-testid="figures-unavailable"' in text
        assert "cannot be computed now" in text
    assert no_worker == []  # nobody asked the worker: the broker is Redis too


# --- the broker gone, in this process -----------------------------------------------------


@pytest.fixture
def dead_broker() -> Iterator[None]:
    """This process's Celery app sends to a port where nothing listens (not eagerly)."""
    from annotate.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool)
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    app.conf.task_always_eager = False
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.task_always_eager = saved[0], saved[1]
        app._pool, app.amqp._producer_pool = saved[2], saved[3]


@pytest.mark.django_db
@pytest.mark.usefixtures("dead_broker")
def test_without_a_broker_the_admin_upload_says_so_and_stores_nothing(
    client: Any, bob: User, project: Any, settings: Any
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.batches.models import Batch, BatchSource

    settings.IMPORT_BACKGROUND_BYTES = 1
    client.force_login(bob)
    upload = SimpleUploadedFile("b.jsonl", jsonl(prompt_line("x-1")), "application/jsonl")
    page = client.post(
        "/admin/batches/batch/upload/", {"project": project.pk, "name": "b", "file": upload}
    )
    assert page.status_code == 503
    assert "The task queue (Redis) cannot be reached" in page.content.decode()
    assert not Batch.objects.exists() and not BatchSource.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("dead_broker")
def test_without_a_broker_import_batch_background_fails_with_the_reason(
    project: Any, tmp_path: Path
) -> None:
    from django.core.management import CommandError, call_command

    from apps.batches.models import Batch

    path = tmp_path / "b.jsonl"
    path.write_bytes(jsonl(prompt_line("x-1")))
    with pytest.raises(CommandError, match="cannot be reached"):
        call_command("import_batch", project.slug, str(path), "--background")
    assert not Batch.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("dead_broker")
def test_without_a_broker_an_export_job_is_refused(
    api: Callable[[User | None], Any], bob: User, project: Any, batch: Any
) -> None:
    from apps.exports.models import ExportJob

    response = api(bob).post("/api/v1/projects/demo/exports/", {"format": "trl"}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert not ExportJob.objects.exists()


# --- /healthz, and the database gone --------------------------------------------------------


@pytest.mark.django_db
def test_healthz_says_ok_when_everything_answers(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["cache"] == ("ok" if HAS_REDIS else "local")
    assert body["broker"] == "eager"  # the tests run tasks in process
    assert "cache_down_since" not in body


DEAD_DATABASE = """
import json
import django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
answers = {}
health = client.get("/healthz")
answers["healthz"] = [health.status_code, health.json()]
login = client.post("/accounts/login/", {"username": "ann", "password": "pw"})
answers["login"] = [login.status_code, login.content.decode(), login.get("Retry-After")]
api = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token abc")
answers["api"] = [api.status_code, api.json(), api.get("Retry-After")]
print(json.dumps(answers))
"""


def test_without_the_database_pages_and_the_api_answer_a_retryable_503() -> None:
    done = subprocess.run(
        [sys.executable, "-c", DEAD_DATABASE],
        cwd=ROOT,
        env=clean_env(
            DJANGO_SETTINGS_MODULE="annotate.settings",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/annotate",
            ALLOWED_HOSTS="testserver",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["healthz"] == [
        503,
        {"database": "down", "cache": "local", "broker": "eager", "status": "down"},
    ]
    status, text, retry = answers["login"]
    assert (status, retry) == (503, "1")
    assert "The database could not be reached" in text
    status, body, retry = answers["api"]
    assert (status, retry) == (503, "1")
    assert "idempotency_key" in body["detail"]
